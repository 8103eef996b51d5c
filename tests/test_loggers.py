"""Any logger (logger=tensorboard, csv, none, several): every run keeps its own record,
metrics.jsonl, which report.py, --compare and sweep summaries read; runs made before the record
existed report from their TensorBoard event files."""

import csv
import functools
import json
import shutil

import pytest

from shakegpt.bookkeeping.runs import load_run, read_events, read_record
from tests.helpers import TINY, run_cli, run_script

# logger= as typed -> (TensorBoard's event files expected, CSV files expected)
CHOICES = {"csv": (False, True), "none": (False, False), "[tensorboard,csv]": (True, True)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny bigram run per logger choice, trained once for the tests of this file."""

    @functools.cache
    def train(choice: str):
        run_dir = tmp_path_factory.mktemp("run")
        result = run_script("train.py", "model=bigram", f"logger={choice}", f"hydra.run.dir={run_dir}", *TINY)
        assert result.returncode == 0, result.stderr
        return run_dir

    return train


def report(*args) -> str:
    code, stderr, stdout = run_cli("report.py", *map(str, args))
    assert code == 0, stderr
    return stdout


def reported_losses(run_dir) -> str:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return f"val loss (last / best): {metrics['final_val_loss']:.4f} / {metrics['best_val_loss']:.4f}"


@pytest.mark.parametrize("choice", CHOICES)
def test_each_logger_choice_trains_and_reports_its_figures(trained, choice):
    run_dir = trained(choice)
    tensorboard, csv_files = CHOICES[choice]
    assert bool(list(run_dir.glob("events.out.tfevents.*"))) == tensorboard  # the extras: TensorBoard's only
    assert (run_dir / "csv" / "version_0" / "metrics.csv").is_file() == csv_files
    assert (run_dir / "csv" / "version_0" / "hparams.yaml").is_file() == csv_files
    out = report(run_dir)
    assert "status: finished" in out and "step: 20 / 20 (100%)" in out
    assert reported_losses(run_dir) in out
    assert "last sample (step 20):" in out and "tokens/s (last interval): not measured" not in out


def test_several_loggers_receive_the_same_figures_as_the_record(trained):
    run_dir = trained("[tensorboard,csv]")
    record = {step: value for step, value, _ in load_run(run_dir).scalars["val/loss"]}
    assert list(record) == [9, 19]  # steps 10 and 20, counted from 0 as Lightning logs them
    events = {step: value for step, value, _ in read_events(run_dir)[0]["val/loss"]}
    with open(run_dir / "csv" / "version_0" / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/loss")]
    assert events == record == {int(row["step"]): pytest.approx(float(row["val/loss"])) for row in rows}


def test_compare_reads_runs_of_different_loggers(trained):
    out = report("--compare", trained("csv"), trained("none"))
    assert "sample A:\nnot measured" not in out and "sample B:\nnot measured" not in out
    last = [line for line in out.splitlines() if line.startswith("val loss")]
    assert len(last) == 1 and "not measured" not in last[0]


def test_a_sweep_with_the_csv_logger_summarises_its_jobs(tmp_path):
    result = run_script("train.py", "-m", f"hydra.sweep.dir={tmp_path}", "model=bigram", "logger=csv", *TINY,
                        "trainer.max_steps=10,20")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "summary.csv") as file:
        rows = {row["job"]: row for row in csv.DictReader(file)}
    for job in ("0", "1"):
        metrics = json.loads((tmp_path / job / "metrics.json").read_text())
        assert float(rows[job]["final_val_loss"]) == pytest.approx(metrics["final_val_loss"], abs=1e-6)
        assert not list((tmp_path / job).glob("events.out.tfevents.*"))
    assert "## Samples" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_a_run_from_before_the_record_reports_from_its_tensorboard_events(trained_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    (old / "metrics.jsonl").unlink()
    assert load_run(old).curve("val/loss") == load_run(trained_run).curve("val/loss")
    assert load_run(old).samples == load_run(trained_run).samples
    out = report(old)
    assert reported_losses(old) in out and "last sample (step 20):" in out


def test_the_range_test_logs_to_any_logger(tmp_path):
    result = run_script("train.py", "model=bigram", "logger=csv", "lr_find=true", "lr_range_test.steps=20",
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert len(load_run(tmp_path).scalars["lr_find/loss"]) == 20
    assert "lr_find/loss" in (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()


def line(step: int, value: float) -> str:
    return json.dumps({"step": step, "tag": "val/loss", "value": value, "time": 1.0}) + "\n"


def test_a_resumed_run_s_record_replaces_what_followed_its_checkpoint(tmp_path):
    record = tmp_path / "metrics.jsonl"
    # Logged to step 30, killed, resumed from step 10's checkpoint: steps 20 and 30 logged again.
    record.write_text(line(9, 2.0) + line(19, 1.9) + line(29, 1.8) + line(19, 1.5) + line(29, 1.4))
    assert read_record(record)[0]["val/loss"] == [(9, 2.0, 1.0), (19, 1.5, 1.0), (29, 1.4, 1.0)]


def test_the_record_skips_a_line_cut_short(tmp_path):
    record = tmp_path / "metrics.jsonl"
    record.write_text(line(9, 2.0) + line(19, 1.9)[:30])  # a disk that filled mid-line
    assert read_record(record)[0]["val/loss"] == [(9, 2.0, 1.0)]
