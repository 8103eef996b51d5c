"""experiment=cpu_speedrun composes and trains (tiny overrides); the record tool adds one row
from the run it makes, with the evaluator's whole-split figure."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from shakegpt.bookkeeping.runs import load_run
from shakegpt.evaluate import score_checkpoint
from shakegpt.tools import speedrun
from tests.helpers import TINY, run_script

SMALL = ["model.n_embd=32", "model.n_layer=1", "data.block_size=16", "data.batch_size=8"]


@pytest.mark.slow
@pytest.mark.parametrize("experiment, model", [("cpu_speedrun", "v12.V12"), ("cpu_sprint", "v11.V11")])
def test_the_speedrun_recipes_train_with_tiny_overrides(tmp_path, experiment, model):
    result = run_script("train.py", f"experiment={experiment}", f"hydra.run.dir={tmp_path}", *TINY, *SMALL)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 20
    config = (tmp_path / ".hydra" / "config.yaml").read_text()
    assert f"shakegpt.models.{model}" in config and "MuonWithAdamW" in config


@pytest.mark.slow
def test_the_sprint_evaluates_once_at_its_end_without_a_sample_or_attention_image(tmp_path):
    result = run_script("train.py", "experiment=cpu_sprint", "trainer.max_steps=12", "data.eval_iters=2",
                        f"hydra.run.dir={tmp_path}", *SMALL)
    assert result.returncode == 0, result.stderr
    run = load_run(tmp_path)
    assert [step for step, _, _ in run.scalars["val/loss"]] == [11]  # after the 12th step only
    assert run.samples == []
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == []


@pytest.mark.slow
def test_each_run_adds_one_row_with_its_command_and_whole_split_loss(tmp_path):
    out = tmp_path / "speedrun.md"
    for change in ("first", "second | with a bar"):
        speedrun.main(["--change", change, "--runs", str(tmp_path / "runs"), "--out", str(out), *TINY, *SMALL])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 20")]
    assert len(rows) == 2
    run_dirs = sorted((tmp_path / "runs").iterdir())
    loss, _, _ = score_checkpoint(run_dirs[0] / "checkpoints" / "last.ckpt")
    assert f"| {loss:.4f} |" in rows[0] and "`python train.py experiment=cpu_speedrun trainer.max_steps=20" in rows[0]
    assert rows[0].endswith("| yes | first |") and rows[1].endswith("| second / with a bar |")
    assert "| not reached |" in rows[0]  # 20 tiny steps stay far above 1.88
