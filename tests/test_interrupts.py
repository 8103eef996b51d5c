"""Ctrl-C, SIGTERM, a full disk and an interrupted sweep: each ends in one line, loses at most
the current step, and continues with resume=auto to exactly the uninterrupted result."""

import errno
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shakegpt.bookkeeping.checkpoints import read_checkpoint
from tests.helpers import ROOT, commands, run_cli, run_script
from tests.test_robustness import RESUMABLE, val_curve

LOSSES = ("final_train_loss", "final_val_loss", "best_val_loss", "steps")
# A 2 x 2 sweep of tiny runs; the second pair runs long enough to be interrupted mid-job.
SWEEP = [
    "model=v6", "trainer.max_steps=60,200", "data.block_size=8,16", "trainer.val_check_interval=50",
    "data.eval_iters=4", "checkpoint.every_n_steps=10", "checkpoint.every_minutes=null", "sample_tokens=10",
]


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def status(run_dir):
    return json.loads((run_dir / "status.json").read_text())


def signal_when(command, ready, signum, timeout=120, env=None):
    """Start command, send signum once ready() holds; (exit code, stderr). A process that has not
    ended timeout seconds later is killed, failing the test."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and not ready():
        time.sleep(0.02)
    process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"{shlex.join(map(str, command))} did not end within {timeout} s of {signal.Signals(signum).name}") from None
    return process.returncode, stderr


def seen_for(condition, seconds):
    """A ready() that holds once condition() has held for this long (first seen, then waited)."""
    first = []

    def ready():
        if not first and condition():
            first.append(time.time())
        return bool(first) and time.time() - first[0] >= seconds

    return ready


def checkpoint_at_least(path, step):
    def ready():
        try:
            return read_checkpoint(path)["global_step"] >= step
        except Exception:
            return False

    return ready


def printed_command(stderr):
    """The arguments of the `continue with: python train.py ...` line."""
    last = stderr.strip().splitlines()[-1]
    found = re.search(r"; continue with: python train\.py (.*)$", last)
    assert found, last
    return shlex.split(found.group(1))


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole")
    result = run_script("train.py", *RESUMABLE, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_the_step_reached_and_resume_ends_as_the_uninterrupted_run(tmp_path, whole_run, signum, code):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    command = [sys.executable, str(ROOT / "train.py"), *RESUMABLE, f"hydra.run.dir={run_dir}"]
    returncode, stderr = signal_when(command, checkpoint_at_least(last, 60), signum)

    assert returncode == code, stderr
    state = status(run_dir)
    step = read_checkpoint(last)["global_step"]
    assert state["state"] == "interrupted" and state["steps"] == step and state["signal"] == signum.name
    assert 60 <= step < 400
    assert stderr.strip().splitlines()[-1].startswith(f"interrupted by {signum.name} at step {step}, checkpoint {last}")
    assert not list(run_dir.rglob("*.partial*"))
    code, _, report = run_cli("report.py", str(run_dir))
    assert code == 0 and f"status: interrupted at step {step} by {signum.name}" in report

    args = printed_command(stderr)
    assert args == [*RESUMABLE, f"hydra.run.dir={run_dir}", "resume=auto"]
    result = run_script("train.py", *args)
    assert result.returncode == 0, result.stderr
    assert f"resuming from {last} at step {step}" in result.stdout
    assert {k: metrics(run_dir)[k] for k in LOSSES} == {k: metrics(whole_run)[k] for k in LOSSES}
    assert val_curve(run_dir) == val_curve(whole_run)


# The environment of a one-task SLURM batch job, as Lightning's SLURMEnvironment reads it.
SLURM_JOB = {
    "SLURM_JOB_ID": "777", "SLURM_JOB_NAME": "train", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_NNODES": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
}

def slurm_job_env(tmp_path):
    """SLURM_JOB's environment with a stand-in scontrol first on PATH: it records its arguments
    in tmp_path/scontrol.log and ends the job as SLURM does after `scontrol requeue`, with
    SIGTERM to the process that called it (the SIGKILL after SLURM's grace period is signal_when's
    kill at its timeout)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_LOG"\nkill -TERM "$PPID"\n')
    (bin_dir / "scontrol").chmod(0o755)
    return {**os.environ, **SLURM_JOB, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SCONTROL_LOG": str(tmp_path / "scontrol.log")}


@pytest.mark.slow
def test_slurm_requeue_saves_the_step_reached_and_the_requeued_job_ends_as_the_uninterrupted_run(tmp_path, whole_run):
    run_dir, env = tmp_path / "run", slurm_job_env(tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    command = [sys.executable, str(ROOT / "train.py"), *RESUMABLE, f"hydra.run.dir={run_dir}"]
    returncode, stderr = signal_when(command, checkpoint_at_least(last, 60), signal.SIGUSR1, env=env)

    assert returncode == 128 + signal.SIGUSR1, stderr
    step = read_checkpoint(last)["global_step"]
    state = status(run_dir)
    assert (state["state"], state["steps"], state["signal"], state["job"]) == ("requeued", step, "SIGUSR1", "777")
    assert (tmp_path / "scontrol.log").read_text() == "requeue 777\n"
    assert not list(run_dir.rglob("hpc_ckpt_*"))  # Lightning's own requeue is off: one checkpoint
    assert stderr.strip().splitlines()[-1].startswith(f"requeued by SIGUSR1 at step {step}, checkpoint {last}")
    code, _, report = run_cli("report.py", str(run_dir))
    assert code == 0 and f"status: requeued at step {step} by SIGUSR1; SLURM job 777" in report

    # SLURM runs the job again: the same command, SLURM_RESTART_COUNT set, no resume=auto typed.
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**env, "SLURM_RESTART_COUNT": "1"})
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from {last} at step {step}" in rerun.stdout
    assert {k: metrics(run_dir)[k] for k in LOSSES} == {k: metrics(whole_run)[k] for k in LOSSES}
    assert val_curve(run_dir) == val_curve(whole_run)  # values and step labels
    assert status(run_dir)["state"] == "finished"


def process_record(pid):
    """(argv, environment, working directory) of a running process, to start it again as it was."""
    proc = f"/proc/{pid}"
    with open(f"{proc}/cmdline", "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    with open(f"{proc}/environ", "rb") as f:
        env = dict(item.decode().split("=", 1) for item in f.read().split(b"\0") if b"=" in item)
    return argv, env, os.readlink(f"{proc}/cwd")


@pytest.mark.slow
def test_a_submitit_sweep_job_requeued_under_slurm_continues_when_slurm_runs_it_again(tmp_path, whole_run):
    # hydra/launcher=slurm's jobs get submitit's USR2 before their time limit. submitit_local runs
    # the same job code (the pickled job, unpickled in a process of its own), here in a SLURM job's
    # environment: the job is requeued as a single run is, and SLURM's rerun of it is the same
    # process started again with SLURM_RESTART_COUNT=1.
    sweep_dir, env = tmp_path / "sweep", slurm_job_env(tmp_path)
    job_dir = sweep_dir / "0"
    last = job_dir / "checkpoints" / "last.ckpt"
    driver = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "-m", *RESUMABLE, "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep_dir}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    while not checkpoint_at_least(last, 60)() and driver.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    pid = status(job_dir)["pid"]
    job_argv, job_env, job_cwd = process_record(pid)
    os.kill(pid, signal.SIGUSR2)
    driver.communicate(timeout=120)  # locally no one requeues the job, so the sweep ends; on SLURM it waits

    step = read_checkpoint(last)["global_step"]
    state = status(job_dir)
    assert (state["state"], state["steps"], state["signal"], state["job"]) == ("requeued", step, "SIGUSR2", "777")
    assert (tmp_path / "scontrol.log").read_text() == "requeue 777\n"
    rerun = subprocess.run(job_argv, cwd=job_cwd, env={**job_env, "SLURM_RESTART_COUNT": "1"}, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from {last} at step {step}" in rerun.stdout + rerun.stderr
    assert {k: metrics(job_dir)[k] for k in LOSSES} == {k: metrics(whole_run)[k] for k in LOSSES}
    assert val_curve(job_dir) == val_curve(whole_run)


@pytest.mark.slow
def test_a_signal_during_an_evaluation_keeps_that_evaluation(tmp_path):
    # last.ckpt first appears at step 25; the first evaluation (about 4 s here) starts at step 50, so
    # a second later the signal lands in it. It finishes, then the run stops at step 50.
    slow_eval = [o for o in RESUMABLE if not o.startswith(("data.eval_iters", "checkpoint.every_n_steps"))]
    slow_eval += ["data.eval_iters=2000", "checkpoint.every_n_steps=25"]
    run_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), *slow_eval, f"hydra.run.dir={run_dir}"]
    returncode, stderr = signal_when(command, seen_for((run_dir / "checkpoints" / "last.ckpt").exists, 1.0), signal.SIGINT)
    assert returncode == 130, stderr
    assert "stopping after the evaluation in progress" in stderr
    assert status(run_dir)["steps"] == 50
    assert list(val_curve(run_dir)) == [49]  # TensorBoard counts steps from 0
    assert read_checkpoint(run_dir / "checkpoints" / "best.ckpt")["global_step"] == 50


@pytest.mark.slow
def test_a_signal_during_the_text_sample_stops_the_run_within_seconds(tmp_path):
    # v7 at its full size: the evaluation at step 0 (the lecture evaluates before training) logs its
    # losses, then the text sample of 10,000 tokens starts, minutes of forward passes on a CPU (the
    # window slides past block_size, where no cache helps). A second into it, SIGTERM.
    run_dir = tmp_path / "run"
    overrides = ["model=v7", "data.batch_size=1", "trainer.max_steps=3", "trainer.val_check_interval=1",
                 "data.eval_iters=1", "sample_tokens=10000", "attention_images=false"]
    command = [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    try:
        ready = seen_for(lambda: metrics.is_file() and '"val/loss"' in metrics.read_text(), 1.0)  # the sample follows
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None and not ready():
            time.sleep(0.02)
        assert ready(), "the evaluation at step 0 never logged its loss"
        process.send_signal(signal.SIGTERM)
        signalled = time.time()
        _, stderr = process.communicate(timeout=60)
        stopped_after = time.time() - signalled
    finally:
        process.kill()
    assert process.returncode == 143, stderr[-3000:]
    assert stopped_after < 10, stopped_after  # the checkpoint's writing included
    # The sample is cut short, then the first step ends the run, as a signal between steps does.
    assert status(run_dir)["state"] == "interrupted" and status(run_dir)["steps"] == 1
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 1
    assert "stopping after this step" in stderr and "Traceback" not in stderr


# Before their imports end (torch and Lightning: seconds), each entry point answers Ctrl-C: the
# scripts, and every `python -m` command (asked for its --help: one the signal misses does no work).
STARTING = [
    ["train.py", "model=v6", "hydra.run.dir=run"], ["sample.py"], ["report.py", "{run}"],
    *(["-m", command, "--help"] for command in commands() if not command.endswith(".py")),
]


def start_up_moments(args: list[str], cwd: Path) -> list[float]:
    """When to signal: train.py within its imports (seconds); any other command at fractions of
    its own unsignalled time (some, such as --help, end in a fifth of a second), before the
    teardown at its end."""
    if args[0].endswith("train.py"):
        return [0.3, 1.0, 2.0]
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, check=False, timeout=300)
    took = time.perf_counter() - start
    return [max(0.05, fraction * took) for fraction in (0.15, 0.35, 0.55)]


@pytest.mark.slow
@pytest.mark.parametrize("command", STARTING, ids=[c[0] if c[0] != "-m" else c[1] for c in STARTING])
def test_ctrl_c_during_start_up_is_one_line(tmp_path, trained_run, command):
    args = [str(ROOT / command[0]) if command[0].endswith(".py") else command[0], *(a.format(run=trained_run) for a in command[1:])]
    answered = 0
    for delay in start_up_moments(args, tmp_path):
        process = subprocess.Popen([sys.executable, *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        if process.poll() is not None:  # a quicker run than the first: done before the signal
            assert process.returncode == 0
            continue
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
        if process.returncode == -signal.SIGINT and not stderr and delay < 0.15:
            continue  # the interpreter itself had not started yet: the system's default, no traceback
        assert process.returncode == 130, (delay, stderr[-3000:])
        assert stderr.startswith("interrupted by SIGINT") and stderr.count("\n") == 1, (delay, stderr[-3000:])
        answered += 1
    assert answered, "the command ended before any signal could be sent"


@pytest.mark.slow
def test_ctrl_c_after_the_reader_of_stdout_is_gone(tmp_path):
    # `python train.py | tail`, then Ctrl-C: tail dies first, and the progress bar's next write
    # meets a broken pipe. The run must still stop with its checkpoint and status.
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    command = [sys.executable, str(ROOT / "train.py"), *RESUMABLE, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = checkpoint_at_least(last, 60)
    while process.poll() is None and not ready():
        time.sleep(0.02)
    process.stdout.close()
    process.send_signal(signal.SIGINT)
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 130, stderr
    assert status(run_dir)["state"] == "interrupted"
    assert status(run_dir)["steps"] == read_checkpoint(last)["global_step"]


@pytest.mark.slow
def test_interrupt_before_training_is_one_line(tmp_path):
    # Sent while the process still imports and builds: no checkpoint yet, still a clean stop.
    run_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), *RESUMABLE, f"hydra.run.dir={run_dir}"]
    returncode, stderr = signal_when(command, lambda: (run_dir / "status.json").exists(), signal.SIGTERM)
    assert returncode == 143, (returncode, stderr[-3000:])
    assert "Traceback" not in stderr
    assert re.search(r"interrupted by SIGTERM (before training started|at step \d+)", stderr.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_2x2_sweep_interrupted_in_its_third_job_resumes_to_the_uninterrupted_sweep(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_script("train.py", "-m", *SWEEP, f"hydra.sweep.dir={whole}").returncode == 0
    command = [sys.executable, str(ROOT / "train.py"), "-m", *SWEEP, f"hydra.sweep.dir={cut}"]
    returncode, stderr = signal_when(command, checkpoint_at_least(cut / "2" / "checkpoints" / "last.ckpt", 20), signal.SIGINT)
    assert returncode == 130, stderr
    assert [status(cut / str(j))["state"] for j in range(3)] == ["finished", "finished", "interrupted"]
    assert not (cut / "3").exists()
    finished_before = {j: (cut / str(j) / "metrics.json").stat().st_mtime_ns for j in (0, 1)}
    hydra_before = {j: (cut / str(j) / ".hydra" / "config.yaml").stat().st_mtime_ns for j in (0, 1)}

    args = printed_command(stderr)
    assert args == ["-m", *SWEEP, f"hydra.sweep.dir={cut}", "resume=auto"]
    result = run_script("train.py", *args)
    assert result.returncode == 0, result.stderr
    for j in (0, 1):  # finished jobs are left as they are
        assert (cut / str(j) / "metrics.json").stat().st_mtime_ns == finished_before[j]
        assert (cut / str(j) / ".hydra" / "config.yaml").stat().st_mtime_ns == hydra_before[j]
    for j in range(4):
        assert {k: metrics(cut / str(j))[k] for k in LOSSES} == {k: metrics(whole / str(j))[k] for k in LOSSES}, j
    summary = (cut / "summary.md").read_text()
    assert "4 jobs: 4 finished, 0 failed" in summary and "resume=auto" not in summary.split("Every job")[1]
    assert status(cut)["state"] == "finished"


def test_resume_auto_finds_the_newest_unfinished_sweep_of_the_same_command(tmp_path):
    from shakegpt.bookkeeping.resume import find_unfinished_sweep

    def make_sweep(name, task, state):
        sweep = tmp_path / "multirun" / "2026-01-01" / name
        sweep.mkdir(parents=True)
        (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n" + "".join(f"    - {o}\n" for o in task))
        (sweep / "status.json").write_text(json.dumps({"state": state}))
        time.sleep(0.01)
        return sweep

    make_sweep("a", ["model=v6", "data.block_size=8,16"], "running")
    newest = make_sweep("b", ["model=v6", "data.block_size=8,16", "resume=auto"], "running")
    make_sweep("c", ["model=v6", "data.block_size=8,16"], "finished")
    make_sweep("d", ["model=v5", "data.block_size=8,16"], "running")
    wanted = ["-m", "data.block_size=8,16", "model=v6", "resume=auto"]
    assert find_unfinished_sweep(wanted, tmp_path / "multirun", "*/*") == newest
    assert find_unfinished_sweep(["-m", "model=v4"], tmp_path / "multirun", "*/*") is None


def mount_tiny_tmpfs(path, size="1200k") -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_full_disk_during_training_is_one_line(tmp_path):
    disk = tmp_path / "disk"
    if not mount_tiny_tmpfs(disk):
        pytest.skip("needs root to mount a tmpfs; test_a_failed_write_leaves_no_partial_file simulates it")
    try:
        run_dir = disk / "run"
        result = run_script(
            "train.py", "model=v6", "trainer.max_steps=2000", "trainer.val_check_interval=100", "data.eval_iters=4",
            "checkpoint.every_n_steps=20", "checkpoint.every_minutes=null", f"hydra.run.dir={run_dir}",
        )
        assert result.returncode == 2
        last_line = result.stderr.strip().splitlines()[-1]
        found = re.fullmatch(r"error: cannot write (\S+): No space left on device; the last good checkpoint is (\S+) \(step (\d+)\)", last_line)
        assert found, result.stderr[-3000:]
        assert read_checkpoint(found.group(2))["global_step"] == int(found.group(3))
        assert not list(run_dir.rglob("*.partial*"))
        assert status(run_dir) | {"state": "failed"} == status(run_dir) and status(run_dir)["reason"] == last_line[len("error: "):]
    finally:
        subprocess.run(["umount", str(disk)])


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS], ids=["full", "read-only"])
def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, err, trained_run):
    from shakegpt.training.checkpoint_io import AtomicCheckpointIO
    from shakegpt.common import atomic

    target = tmp_path / "last.ckpt"
    target.write_bytes((trained_run / "checkpoints" / "last.ckpt").read_bytes())
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(err, os.strerror(err))))
    with pytest.raises(atomic.WriteError, match=f"cannot write {target}: {os.strerror(err)}"):
        AtomicCheckpointIO().save_checkpoint(read_checkpoint(target), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    read_checkpoint(target)  # the previous checkpoint is intact


def test_a_vanished_run_directory_is_not_recreated(tmp_path):
    from shakegpt.training.checkpoint_io import AtomicCheckpointIO
    from shakegpt.common.atomic import WriteError

    with pytest.raises(WriteError, match=f"cannot write {tmp_path / 'gone' / 'checkpoints' / 'last.ckpt'}: No such file"):
        AtomicCheckpointIO().save_checkpoint({"global_step": 1}, tmp_path / "gone" / "checkpoints" / "last.ckpt")
    assert not (tmp_path / "gone").exists()


def test_a_sweep_summary_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, trained_run):
    import shutil

    from shakegpt.common import atomic

    sweep = tmp_path / "sweep"
    shutil.copytree(trained_run, sweep / "0")
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    code, stderr, _ = run_cli("report.py", str(sweep))
    assert code == 2
    assert stderr.strip() == f"error: cannot write {sweep / 'summary.csv'}: No space left on device"
    assert not list(sweep.glob(".*partial*"))


@pytest.mark.slow
def test_a_job_that_fails_while_being_built_records_the_cause(tmp_path):
    result = run_script("train.py", "-m", "model=v6", "+model.colour=blue", "trainer.max_steps=5", f"hydra.sweep.dir={tmp_path}")
    reason = status(tmp_path / "0")["reason"]
    assert result.returncode == 1
    assert reason.startswith("TypeError: ") and "colour" in reason, reason


def test_a_disk_too_full_to_start_on_is_one_line(tmp_path):
    disk = tmp_path / "disk"
    if not mount_tiny_tmpfs(disk, size="8k"):
        pytest.skip("needs root to mount a tmpfs")
    try:
        code, stderr, _ = run_cli("train.py", "model=v6", f"hydra.run.dir={disk / 'run'}")
        assert code == 2
        assert stderr.strip() == f"error: cannot write the output directory {disk / 'run'}: No space left on device"
    finally:
        subprocess.run(["umount", str(disk)])
