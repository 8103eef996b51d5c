"""train.py end to end, as a user runs it."""

import json

import pytest

from tests.conftest import ROOT, TINY, run_script


def test_train_writes_checkpoints_tensorboard_and_metrics(trained_run):
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["steps"] == 20
    assert metrics["parameters"] == 42_369
    assert metrics["best_val_loss"] <= metrics["final_val_loss"]


def test_tensorboard_has_the_lecture_metrics(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained_run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {"train/step_loss", "train/loss", "val/loss", "val/perplexity", "train/lr", "perf/tokens_per_s"}
    assert expected <= scalars
    # evaluated every 10 steps: after steps 10 and 20
    assert [e.step + 1 for e in events.Scalars("val/loss")] == [10, 20]
    assert "sample/text_summary" in events.Tags()["tensors"]
    assert "hp/final_val_loss" in scalars


def test_final_evaluation_when_steps_are_not_a_multiple_of_the_interval(tmp_path):
    result = run_script("train.py", "model=bigram", f"hydra.run.dir={tmp_path}", *TINY, "trainer.max_steps=25")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 25


def test_bad_config_is_one_line_and_nonzero_exit(tmp_path):
    result = run_script("train.py", "model=v6", "model.n_head=5", f"hydra.run.dir={tmp_path / 'run'}", *TINY)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: model.n_embd=32 must be divisible by model.n_head=5"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_two_by_two_multirun_creates_four_job_directories(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py", "-m", "model=bigram", "trainer.max_steps=10,20", "data.block_size=4,8", f"hydra.sweep.dir={sweep}",
        *[o for o in TINY if not o.startswith("trainer.max_steps")],
    )
    assert result.returncode == 0, result.stderr
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert jobs == ["0", "1", "2", "3"]
    steps = sorted(json.loads((sweep / j / "metrics.json").read_text())["steps"] for j in jobs)
    assert steps == [10, 10, 20, 20]


def test_bf16_autocast_with_gradient_clipping_trains(tmp_path):
    # Lightning refuses clipping with a fused optimizer under mixed precision: the model falls back.
    result = run_script(
        "train.py", "model=v6", f"hydra.run.dir={tmp_path}", *TINY,
        "trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 20


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_each_experiment_trains(experiment, tmp_path):
    # Short windows and small batches: the GPU recipe's model then trains here in seconds too.
    small = ["data.batch_size=4", "data.block_size=16"]
    result = run_script("train.py", f"experiment={experiment}", f"hydra.run.dir={tmp_path}", *TINY, *small)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 20
