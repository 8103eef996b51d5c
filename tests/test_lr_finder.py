import pytest
import torch

from shakegpt.data import CorpusDataModule
from shakegpt.models.v6 import V6
from shakegpt.training.module import trainable
from shakegpt.training.lr_finder import lr_range_test
from shakegpt.training.optimizers import build_optimizer


def test_range_test_suggests_a_rate_inside_the_range_that_trains():
    data = CorpusDataModule(batch_size=32, block_size=8)
    torch.manual_seed(0)
    model = trainable(V6)(vocab=data.tokenizer.chars, block_size=8, n_embd=32, n_head=4, n_layer=1)
    result = lr_range_test(model, iter(data.train_dataloader()), min_exp=-4, max_exp=0, steps=300)
    assert 1e-4 <= result.suggestion <= 1.0
    assert result.losses[0] > min(result.smoothed)  # the loss fell somewhere in the range
    assert len(result.losses) == len(result.log10_lrs) <= 300

    torch.manual_seed(0)
    fresh = V6(data.tokenizer.chars, 8, n_embd=32, n_head=4, n_layer=1)
    optimizer = build_optimizer(fresh, {"_target_": "torch.optim.AdamW", "lr": result.suggestion})
    batches = iter(data.train_dataloader())
    val = data.val_data.long()
    x, y = val[:-1][:4096].view(-1, 8), val[1:][:4096].view(-1, 8)
    before = fresh.loss(x, y).item()
    for _ in range(200):
        optimizer.zero_grad()
        fresh.loss(*next(batches)).backward()
        optimizer.step()
    assert fresh.loss(x, y).item() < before - 0.5


@pytest.mark.slow
def test_lr_find_writes_the_plot_and_prints_the_suggestion(tmp_path):
    from tests.helpers import run_script

    result = run_script("train.py", "model=v6", "lr_find=true", "lr_range_test.steps=100", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "learning-rate range test: suggested lr" in result.stdout
    assert (tmp_path / "lr_find.png").stat().st_size > 10_000
    assert not (tmp_path / "checkpoints").exists()  # the test alone trains nothing
