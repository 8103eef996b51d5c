"""The full-split evaluation: every position of a split scored exactly once."""

import math

import pytest
import torch

from shakegpt.evaluate import main, split_loss
from shakegpt.models.bigram import Bigram
from shakegpt.models.v6 import V6


def bigram_with_probabilities() -> Bigram:
    """p(next | a) = (0.75, 0.25), p(next | b) = (0.4, 0.6) over the vocabulary 'ab'."""
    model = Bigram(vocab="ab", block_size=3)
    with torch.no_grad():
        model.token_embedding.weight.copy_(torch.tensor([[0.75, 0.25], [0.4, 0.6]]).log())
    return model.eval()


@pytest.mark.parametrize("block_size", [1, 3, 7, 50])
def test_the_loss_on_a_tiny_split_is_the_hand_computed_mean(block_size):
    model = bigram_with_probabilities()
    model.block_size = block_size  # a bigram reads no context: every cut must give the same figure
    text = "aababbbaab"
    p = {("a", "a"): 0.75, ("a", "b"): 0.25, ("b", "a"): 0.4, ("b", "b"): 0.6}
    by_hand = -sum(math.log(p[pair]) for pair in zip(text, text[1:])) / (len(text) - 1)
    tokens = torch.tensor(model.tokenizer.encode(text))
    loss, scored = split_loss(model, tokens, batch=2)
    assert scored == len(text) - 1
    assert loss == pytest.approx(by_hand, rel=1e-6)


def test_windows_are_consecutive_and_read_only_their_own_context():
    torch.manual_seed(0)
    model = V6(vocab="abcd", block_size=4, n_embd=8, n_head=2, n_layer=1).eval()
    tokens = torch.randint(0, 4, (11,))  # 10 targets: windows [0:4], [4:8] and the tail [8:10]
    windows = [(0, 4), (4, 8), (8, 10)]
    total = sum(
        model.loss(tokens[a:b][None], tokens[a + 1 : b + 1][None]).item() * (b - a) for a, b in windows
    )
    loss, scored = split_loss(model, tokens, batch=1)
    assert scored == 10
    assert loss == pytest.approx(total / 10, rel=1e-5)


def test_the_command_scores_a_run_s_validation_split(trained_run, capsys):
    main([f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", "split=val"])
    out = capsys.readouterr().out
    loss = float(out.split("loss ")[1].split(",")[0])
    bits = float(out.split(", ")[1].split(" bits")[0])
    assert out.startswith("val: loss ") and "over all 111,539 positions in windows of 8" in out
    assert bits == pytest.approx(loss / math.log(2), abs=1e-4)
    assert 2.0 < loss < 4.5  # a 20-step v6: above a trained model, below uniform guessing over 65 (4.17) + slack


@pytest.mark.parametrize("args, message", [
    (["split=dev"], "error: split must be one of train, val, test, got dev"),
    (["ckpt"], "error: expected name=value, got 'ckpt' (python -m shakegpt.evaluate --help)"),
    (["ckpt=/no/such.ckpt"], "error: checkpoint /no/such.ckpt does not exist"),
])
def test_wrong_input_is_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 2
    assert capsys.readouterr().err.startswith(message)


def test_a_directory_named_as_the_checkpoint_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([f"ckpt={tmp_path}"])
    assert capsys.readouterr().err.strip() == (
        f"error: checkpoint {tmp_path} is a directory; name a .ckpt file in it, e.g. {tmp_path}/checkpoints/best.ckpt"
    )


def test_an_empty_test_split_is_one_line(trained_run, capsys):
    with pytest.raises(SystemExit):
        main([f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", "split=test"])
    assert capsys.readouterr().err.strip() == (
        "error: the test split is empty; data.splits sets its fraction (e.g. [0.9,0.05,0.05])"
    )
