"""report.py on a finished run, a failed run, a run still training, and a comparison."""

import json
import subprocess
import sys
import time

import pytest

from shakegpt.bookkeeping.runs import load_run
from tests.helpers import ROOT, TINY, run_cli


def report(*args: str) -> str:
    code, stderr, stdout = run_cli("report.py", *map(str, args))
    assert code == 0, stderr
    return stdout


def test_report_on_a_finished_run(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    out = report(trained_run)
    assert "status: finished" in out
    assert "step: 20 / 20 (100%)" in out
    assert f"val loss (last / best): {metrics['final_val_loss']:.4f} / {metrics['best_val_loss']:.4f}" in out
    assert "parameters: 42,369" in out
    assert "FLOPs per token (estimated):" in out and "last sample (step 20):" in out
    assert "ETA" not in out


def failed_run(run_dir):
    """A run that failed once it had begun (one refused before leaves no directory): a learning
    rate that makes the loss diverge at its first step."""
    assert run_cli("train.py", "model=v6", "model.n_head=2", "optimizer.lr=1e30", f"hydra.run.dir={run_dir}", *TINY)[0] == 2
    return run_dir


def test_report_on_a_failed_run(tmp_path):
    out = report(failed_run(tmp_path))
    assert "status: failed: the training loss became nan at step 2" in out
    assert "val loss (last / best): not measured / not measured" in out
    assert "tokens/s (last interval): not measured" in out


@pytest.mark.slow
def test_report_on_a_run_still_training(tmp_path):
    command = [sys.executable, str(ROOT / "train.py"), "model=v6", f"hydra.run.dir={tmp_path}",
               "trainer.max_steps=1000000", "trainer.log_every_n_steps=10", "trainer.val_check_interval=100",
               "data.eval_iters=2"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            time.sleep(2)
            if (tmp_path / ".hydra" / "config.yaml").exists() and load_run(tmp_path).scalars.get("val/loss"):
                break
        out = report(tmp_path)
        assert "status: running" in out
        assert "step: " in out and "/ 1,000,000 (" in out
        eta = next(line for line in out.splitlines() if line.startswith("ETA: "))
        assert eta != "ETA: not measured"
    finally:
        process.kill()
        process.wait()
    assert "status: stopped (its process is gone)" in report(tmp_path)


def test_compare_two_runs(trained_run, tmp_path):
    out = report("--compare", trained_run, failed_run(tmp_path))
    assert "model.n_head: 4 -> 2" in out and "optimizer.lr: 0.001 -> 1e+30" in out
    assert "status                        finished                      failed: the training loss became nan" in out
    assert "sample A:" in out and "sample B:\nnot measured" in out


def test_a_resumed_run_counts_the_time_of_each_process_not_the_pause(tmp_path, monkeypatch):
    import shakegpt.bookkeeping.status as status_module
    from shakegpt.bookkeeping.runs import Run, timing
    from shakegpt.bookkeeping.status import read_status, write_status

    (tmp_path / "status.json").write_text(json.dumps({"state": "interrupted", "started": 1000.0, "updated": 1040.0, "pid": -1}))
    monkeypatch.setattr(status_module.time, "time", lambda: 5000.0)  # resumed long after the interruption
    write_status(tmp_path, "running")
    assert read_status(tmp_path)["earlier_seconds"] == 40.0
    monkeypatch.setattr(status_module.time, "time", lambda: 5030.0)
    write_status(tmp_path, "finished")
    run = Run(tmp_path, config={}, overrides=[], status=read_status(tmp_path), scalars={})
    assert timing(run) == (70.0, None)  # 40 s before the interruption, 30 s after the resume
