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
def test_a_call_adds_one_row_with_its_commands_and_whole_split_losses(tmp_path):
    out = tmp_path / "speedrun.md"
    speedrun.main(["--change", "two seeds | with a bar", "--seeds", "5", "6", "--runs", str(tmp_path / "runs"),
                   "--out", str(out), *TINY, *SMALL])
    (row,) = [line for line in out.read_text().splitlines() if line.startswith("| 20")]
    run_dirs = sorted((tmp_path / "runs").iterdir(), key=lambda path: path.name[-1])
    losses = [score_checkpoint(run_dir / "checkpoints" / "last.ckpt")[0] for run_dir in run_dirs]
    assert losses[0] != losses[1]  # two seeds, two runs
    assert f"| {(losses[0] + losses[1]) / 2:.4f} ({losses[0]:.4f}, {losses[1]:.4f}) |" in row  # the median of two
    assert all(f"`python train.py experiment=cpu_speedrun trainer.max_steps=20" in part for part in row.split(";")[:2])
    assert all(f"seed={seed} hydra.run.dir=" in row for seed in (5, 6))
    assert row.endswith("| not reached | yes | two seeds / with a bar |")  # 20 tiny steps stay far above 1.88


def test_a_seed_override_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        speedrun.main(["--change", "x", "--runs", str(tmp_path), "seed=3"])
    assert stopped.value.code != 0 and "--seeds" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_row_names_the_median_run_and_every_figure():
    def result(seconds, reached):
        return {"command": f"python train.py seed={seconds}", "total": seconds, "reached": reached}
    runs = [(result(590, (500, 1.80, 90.0)), 1.4950), (result(601, (500, 1.70, 80.0)), 1.4700),
            (result(580, None), 1.4800)]
    row = speedrun.record_row(runs, "x")
    assert "| 1.4800 (1.4950, 1.4700, 1.4800) |" in row and "| 590 (590, 601, 580) s |" in row
    assert "| not reached |" in row  # the median run's own estimate
    assert "| **no** |" in row  # one run of three went past ten minutes
    one = speedrun.record_row(runs[:1], "x")
    assert "| 1.4950 | 2.157 | 590 s | val 1.8000 at step 500, 90.0 s | yes | x |" in one
