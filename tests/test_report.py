"""report.py on a finished run, a failed run, a run still training, and a comparison."""

import json
import subprocess
import sys
import time

from shakegpt.report import load_run
from tests.conftest import ROOT, TINY, run_script


def test_report_on_a_finished_run(trained_run):
    result = run_script("report.py", str(trained_run))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((trained_run / "metrics.json").read_text())
    out = result.stdout
    assert "status: finished" in out
    assert "step: 20 / 20 (100%)" in out
    assert f"val loss (last / best): {metrics['final_val_loss']:.4f} / {metrics['best_val_loss']:.4f}" in out
    assert "parameters: 42,369" in out
    assert "FLOPs per token (estimated):" in out and "last sample (step 20):" in out
    assert "ETA" not in out


def test_report_on_a_failed_run(tmp_path):
    run_script("train.py", "model=v6", "model.n_head=5", f"hydra.run.dir={tmp_path}", *TINY)
    out = run_script("report.py", str(tmp_path)).stdout
    assert "status: failed: model.n_embd=32 must be divisible by model.n_head=5" in out
    assert "val loss (last / best): not measured / not measured" in out
    assert "tokens/s (last interval): not measured" in out


def test_report_on_a_run_still_training(tmp_path):
    command = [sys.executable, str(ROOT / "train.py"), "model=v6", f"hydra.run.dir={tmp_path}",
               "trainer.max_steps=1000000", "trainer.log_every_n_steps=10", "trainer.val_check_interval=100",
               "data.eval_iters=2", "logger.flush_secs=1"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            time.sleep(2)
            if (tmp_path / "tensorboard").exists() and load_run(tmp_path).scalars.get("val/loss"):
                break
        out = run_script("report.py", str(tmp_path)).stdout
        assert "status: running" in out
        assert "step: " in out and "/ 1,000,000 (" in out
        eta = next(line for line in out.splitlines() if line.startswith("ETA: "))
        assert eta != "ETA: not measured"
    finally:
        process.kill()
        process.wait()
    assert "status: stopped (its process is gone)" in run_script("report.py", str(tmp_path)).stdout


def test_compare_two_runs(trained_run, tmp_path):
    run_script("train.py", "model=v6", "data.block_size=16", f"hydra.run.dir={tmp_path}", *TINY)
    result = run_script("report.py", "--compare", str(trained_run), str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "data.block_size: 8 -> 16" in result.stdout
    assert "sample A:" in result.stdout and "sample B:" in result.stdout
