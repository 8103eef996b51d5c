"""Attention maps (python -m shakegpt.attention, the AttentionImage callback): the model's own
weights, recorded from its forward pass, drawn for every version with attention."""

import re
import string
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from shakegpt.attention import (
    DEFAULT_PROMPT,
    attention_grid,
    attention_layers,
    attention_maps,
    colour_table,
    main,
    recording_attention,
)
from shakegpt.models.bigram import Bigram
from shakegpt.training.callbacks import AttentionImage
from shakegpt.training.module import instantiate_trainable, trainable
from tests.helpers import ROOT

VERSIONS = ["v2", "v3", "v3_ff", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v16"]
ONE_LAYER = {"v2", "v3", "v3_ff"}  # their body is a single attention layer
VOCAB = "".join(sorted(set(DEFAULT_PROMPT + string.ascii_letters + " .,;:!?'\n")))
TEXT = "O Romeo,"  # exactly the tiny models' block of 8


def tiny(version: str, *more: str):
    """version's model as conf/model builds it to train (so that save_checkpoint can write it as a
    run does), 16 wide, 2 heads, 2 layers, a block of 8, in eval mode."""
    if version == "bigram":
        return trainable(Bigram)(vocab=VOCAB, block_size=8).eval()
    overrides = [f"model={version}", "model.n_embd=16", "model.n_head=2", "data.block_size=8", *more]
    if version not in ONE_LAYER:
        overrides.append("model.n_layer=2")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    torch.manual_seed(0)
    return instantiate_trainable(cfg.model, vocab=VOCAB).eval()


def save_checkpoint(model, path):
    """What a run's best.ckpt holds for sampling: weights, hyperparameters, the shakegpt record."""
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "global_step": 0}
    model.on_save_checkpoint(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def causal_softmax(scores):  # (..., T, T) -> (..., T, T), the lecture's masked softmax
    T = scores.shape[-1]
    return scores.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf")).softmax(dim=-1)


@pytest.mark.parametrize("version", VERSIONS)
def test_each_row_sums_to_one_and_nothing_is_taken_from_the_future(version):
    model = tiny(version)
    tokens, maps = attention_maps(model, TEXT)
    assert model.tokenizer.decode(tokens) == TEXT
    assert len(maps) == (1 if version in ONE_LAYER else 2)
    for weights in maps:
        assert weights.shape == (2, 8, 8)  # (n_head, query, key)
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 8))
        assert torch.all(weights.triu(diagonal=1) == 0)


@pytest.mark.parametrize("scale", ["n_embd", "head_size"])
@pytest.mark.parametrize("version", ["v2", "v3"])
def test_maps_are_softmax_of_q_k_computed_by_hand_from_the_weights(version, scale):
    """The video's scores are q . k / sqrt(n_embd); model.attention_scale=head_size divides by sqrt(head_size)."""
    model = tiny(version, f"model.attention_scale={scale}")
    idx = torch.tensor(model.tokenizer.encode(TEXT))
    x = model.token_embedding.weight[idx] + model.position_embedding.weight[:8]  # (T, C)
    W = model.body.qkv.weight.detach()  # (3 * nh * hs, C): all queries, then keys, then values, head by head
    nh, hs = model.n_head, model.head_size
    divisor = {"n_embd": 16, "head_size": hs}[scale] ** 0.5
    _, (maps,) = attention_maps(model, TEXT)
    for h in range(nh):
        q = x @ W[h * hs : (h + 1) * hs].T  # (T, hs)
        k = x @ W[(nh + h) * hs : (nh + h + 1) * hs].T
        torch.testing.assert_close(maps[h], causal_softmax(q @ k.T / divisor).detach())


@pytest.mark.parametrize("scale", ["n_embd", "head_size"])
@pytest.mark.parametrize("version", ["v2", "v6", "v7", "v8", "v10", "v12", "v16"])
def test_the_recorded_weights_are_the_ones_the_forward_pass_uses(version, scale):
    """Recording swaps the fused kernel for the step-by-step softmax: the logits stay the same,
    so the maps (the command's and TensorBoard's) are the weights the model really uses."""
    model = tiny(version, f"model.attention_scale={scale}")
    idx = torch.tensor([model.tokenizer.encode(TEXT)])
    with torch.no_grad():
        fused = model(idx)
        with recording_attention(model):
            recorded = model(idx)
    torch.testing.assert_close(recorded, fused)


@pytest.mark.parametrize("version", ["v8", "v10"])
def test_rope_and_qk_norm_maps_use_the_queries_and_keys_the_module_rotated(version):
    model = tiny(version)
    block = model.body[0]
    with torch.no_grad():
        q, k, _ = block.sa.heads(block.ln1(model.token_embedding(torch.tensor([model.tokenizer.encode(TEXT)]))))
        if version == "v10":  # QK-norm before the rotation
            q, k = block.sa.q_norm(q), block.sa.k_norm(k)
        rotated = causal_softmax(block.sa.rotary(q) @ block.sa.rotary(k).transpose(-2, -1) / 8**0.5)[0]
        unrotated = causal_softmax(q @ k.transpose(-2, -1) / 8**0.5)[0]
    maps = attention_maps(model, TEXT)[1]
    torch.testing.assert_close(maps[0], rotated)
    assert not torch.allclose(maps[0], unrotated, atol=1e-3)  # the rotation shows in the map


def test_recording_off_runs_the_fused_kernel_alone_and_keeps_nothing(monkeypatch):
    model = tiny("v7")
    idx = torch.tensor([model.tokenizer.encode(TEXT)])
    fused, calls = F.scaled_dot_product_attention, []
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or fused(*a, **kw))
    with torch.no_grad():
        before = model(idx)
        with recording_attention(model) as maps:
            recorded = model(idx)
        after = model(idx)
    assert len(calls) == 4  # 2 layers, twice: recording computes its weights step by step instead
    assert len(maps) == 2  # the forward passes outside the block added nothing
    assert torch.equal(before, after)
    torch.testing.assert_close(recorded, before)  # the recorded weights make the same output
    for layer in attention_layers(model):
        assert layer.recorded is None
        assert not [name for name, value in vars(layer).items() if isinstance(value, torch.Tensor)]


def test_a_prompt_longer_than_the_block_uses_its_last_block_size_characters(capsys):
    model = tiny("v6")
    tokens, maps = attention_maps(model, DEFAULT_PROMPT)
    assert model.tokenizer.decode(tokens) == DEFAULT_PROMPT[-8:]
    torch.testing.assert_close(maps, attention_maps(model, DEFAULT_PROMPT[-8:])[1])
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "last block_size characters" in capsys.readouterr().out


@pytest.mark.parametrize("version", VERSIONS)
def test_the_command_writes_a_png_for_each_attention_version(version, tmp_path, capsys):
    ckpt = save_checkpoint(tiny(version), tmp_path / "run" / "checkpoints" / "best.ckpt")
    main([f"ckpt={ckpt}", "prompt=ROMEO:\\nO Romeo,", "and", "Juliet", f"out={tmp_path / 'maps.png'}"])
    assert (tmp_path / "maps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out == f"wrote {tmp_path / 'maps.png'}\n"


def test_without_out_the_image_goes_into_the_run_directory(tmp_path, capsys):
    ckpt = save_checkpoint(tiny("v3"), tmp_path / "run" / "checkpoints" / "best.ckpt")
    main([f"ckpt={ckpt}"])
    assert capsys.readouterr().out == f"wrote {tmp_path / 'run' / 'attention.png'}\n"
    assert (tmp_path / "run" / "attention.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "version, args, message",
    [
        ("bigram", [], "error: Bigram has no attention to show (bigram predicts from one character alone); use a "
                       "checkpoint of v2 or later"),
        ("v3", ["prompt=O Romeo 日"], "error: characters not in the model's vocabulary: '日'"),
        ("v3", ["prompt="], "error: the prompt is empty: give prompt=<text> or prompt_file=<path>"),
        ("v3", ["dpi=3"], "error: unknown option dpi; the options are ckpt, device, out, prompt, prompt_file "
                          "(python -m shakegpt.attention --help)"),
        (None, [], "error: checkpoint {tmp_path}/missing.ckpt does not exist"),
    ],
    ids=["bigram", "unknown-characters", "empty-prompt", "unknown-option", "missing-checkpoint"],
)
def test_what_a_user_gets_wrong_is_one_line(version, args, message, tmp_path, capsys):
    ckpt = tmp_path / "missing.ckpt"
    if version is not None:
        ckpt = save_checkpoint(tiny(version), tmp_path / "run" / "checkpoints" / "best.ckpt")
    with pytest.raises(SystemExit) as exit:
        main([f"ckpt={ckpt}", *args, f"out={tmp_path / 'maps.png'}"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == message.format(tmp_path=tmp_path) + "\n"
    assert not (tmp_path / "maps.png").exists()


@pytest.mark.slow
def test_the_command_takes_the_prompt_as_typed_in_a_shell(tmp_path):
    ckpt = save_checkpoint(tiny("v6"), tmp_path / "run" / "checkpoints" / "best.ckpt")
    command = f"{sys.executable} -m shakegpt.attention ckpt={ckpt} prompt=\"ROMEO: it is, 'my lady'\" out={tmp_path}/a.png"
    result = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {tmp_path}/a.png\n"


def fake_trainer(*loggers, step: int = 5):
    return SimpleNamespace(sanity_checking=False, is_global_zero=True, loggers=list(loggers), global_step=step)


def images(logger: TensorBoardLogger) -> dict:
    """{tag: [(step, width, height)]} of the images the logger wrote."""
    logger.experiment.flush()
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    return {tag: [(e.step, e.width, e.height) for e in events.Images(tag)] for tag in events.Tags()["images"]}


def test_the_callback_logs_the_attention_image_to_tensorboard(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    callback = AttentionImage()
    callback.on_validation_end(fake_trainer(logger, step=5), tiny("v6"))
    callback.on_validation_end(fake_trainer(logger, step=10), tiny("v6"))
    # 2 layers down, 2 heads across: panels of 8 positions x 16 pixels, 4-pixel gaps
    assert images(logger) == {"attention/map": [(5, 2 * 132 + 4, 2 * 132 + 4), (10, 2 * 132 + 4, 2 * 132 + 4)]}
    events = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0})
    events.Reload()
    [prompt] = events.Tensors("attention/prompt/text_summary")  # said once
    assert b"`O` `\xe2\x90\xa3` `R` `o` `m` `e` `o`" in prompt.tensor_proto.string_val[0]


def test_the_grid_draws_each_map_in_the_figure_s_colours():
    maps = [torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])]  # 1 layer, 2 heads, T = 2
    grid = attention_grid(maps, panel=2, gap=1)  # a pixel per position: head 0 in columns 1-2, head 1 in 4-5
    assert grid.shape == (4, 7, 3)
    yellow, dark, grey = colour_table()[255], colour_table()[0], torch.full((3,), 217, dtype=torch.uint8)
    expected = {(1, 1): yellow, (1, 2): grey, (2, 1): dark, (2, 2): yellow, (1, 4): yellow, (1, 5): grey, (2, 5): dark}
    for (row, column), colour in expected.items():
        assert torch.equal(grid[row, column], colour), (row, column)


@pytest.mark.parametrize("case", ["flag off", "bigram", "no tensorboard", "prompt outside the vocabulary"])
def test_the_callback_logs_nothing_when_off_for_bigram_and_without_tensorboard(case, tmp_path):
    logger = TensorBoardLogger(tmp_path)
    callback = AttentionImage(enabled=case != "flag off", prompt="日本" if "vocabulary" in case else None)
    trainer = fake_trainer(CSVLogger(tmp_path) if case == "no tensorboard" else logger)
    callback.on_validation_end(trainer, tiny("bigram" if case == "bigram" else "v6"))
    assert images(logger) == {}


@pytest.mark.parametrize("flag, enabled", [([], True), (["attention_images=false"], False)])
def test_one_flag_turns_the_callback_off(flag, enabled):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=flag)
    assert instantiate(cfg.callbacks.attention_image).enabled is enabled


def test_a_training_run_has_attention_images_at_each_evaluation(trained_run):
    events = EventAccumulator(str(trained_run), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    assert [e.step for e in events.Images("attention/map")] == [10, 20]
    assert len(events.Tensors("attention/prompt/text_summary")) == 1


def test_the_guide_s_attention_figures_are_written_by_the_command_beside_them():
    guide = (ROOT / "docs" / "guide.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\((attention_\w+\.png)\)", guide)
    assert len(figures) >= 3
    for figure in figures:
        assert (ROOT / "docs" / figure).stat().st_size > 10_000
        assert re.search(r"python -m shakegpt\.attention ckpt=\S+ prompt=.* out=docs/" + re.escape(figure), guide), figure
