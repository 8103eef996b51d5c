"""Multirun sweeps: summaries, failing jobs, launchers and the Optuna sweeper."""

import csv
import json
import math

import pytest
from omegaconf import OmegaConf

from tests.conftest import TINY, run_script


def sweep(tmp_path, *overrides):
    result = run_script("train.py", "-m", f"hydra.sweep.dir={tmp_path}", *TINY, *overrides)
    return result


def summary_rows(sweep_dir):
    with open(sweep_dir / "summary.csv") as f:
        return {row["job"]: row for row in csv.DictReader(f)}


def test_two_by_two_sweep_summary_matches_the_jobs_logs(tmp_path):
    result = sweep(tmp_path, "model=bigram", "trainer.max_steps=10,20", "data.block_size=4,8")
    assert result.returncode == 0, result.stderr
    rows = summary_rows(tmp_path)
    assert sorted(rows) == ["0", "1", "2", "3"]
    for job, row in rows.items():
        metrics = json.loads((tmp_path / job / "metrics.json").read_text())
        assert row["status"] == "finished"
        assert int(row["steps"]) == metrics["steps"]
        assert float(row["final_val_loss"]) == pytest.approx(metrics["final_val_loss"], abs=1e-6)
        assert float(row["final_train_loss"]) == pytest.approx(metrics["final_train_loss"], abs=1e-6)
        assert float(row["best_val_loss"]) == pytest.approx(metrics["best_val_loss"], abs=1e-6)
        assert int(row["parameters"]) == metrics["parameters"]
        assert int(row["tokens"]) == metrics["tokens"]
    summary = (tmp_path / "summary.md").read_text()
    assert "trainer.max_steps=20 data.block_size=8" in summary and "## Samples" in summary
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path):
    result = sweep(tmp_path, "model=v6", "model.n_head=5,4")
    assert result.returncode == 0, result.stderr
    rows = summary_rows(tmp_path)
    assert rows["0"]["status"] == "failed: model.n_embd=32 must be divisible by model.n_head=5"
    assert rows["1"]["status"] == "finished"
    assert not (tmp_path / "0" / "checkpoints").exists()
    assert (tmp_path / "1" / "checkpoints" / "best.ckpt").is_file()


def test_a_sweep_whose_every_job_fails_exits_nonzero(tmp_path):
    result = sweep(tmp_path, "model=v6", "model.n_head=5,7")
    assert result.returncode == 1
    assert "every job of the sweep failed" in result.stderr
    assert all(row["status"].startswith("failed") for row in summary_rows(tmp_path).values())


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launcher_runs_a_two_job_sweep(tmp_path, launcher):
    result = sweep(tmp_path, "model=bigram", "data.block_size=4,8", f"hydra/launcher={launcher}")
    assert result.returncode == 0, result.stderr
    rows = summary_rows(tmp_path)
    assert [rows[j]["status"] for j in ("0", "1")] == ["finished", "finished"]


def test_optuna_sweeper_runs_trials_and_reports_the_best(tmp_path):
    result = sweep(tmp_path, "model=v6", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=1")
    assert result.returncode == 0, result.stderr
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    values = [json.loads((tmp_path / j / "metrics.json").read_text())["best_val_loss"] for j in ("0", "1", "2")]
    assert best.best_value == pytest.approx(min(values))
    assert {"optimizer.lr", "model.n_embd", "model.n_head", "model.n_layer", "data.block_size"} <= set(best.best_params)
    assert all(math.isfinite(v) for v in values)
