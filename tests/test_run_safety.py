"""A run is never rewritten by mistake: a command aimed at a run's (or sweep's) directory either
resumes it for real or is refused in one line, leaving every file of the directory as it was."""

import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, TINY, run_cli, run_script


def files(directory):
    """Every file under directory, by relative path, with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def finished_run(tmp_path, trained_run):
    """A copy of the session's tiny v6 run (model=v6 and TINY: finished at step 20)."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    return run_dir


def refused(run_dir, *args) -> str:
    """train.py's one-line error for args, after checking that run_dir is byte for byte as it was."""
    before = files(run_dir)
    code, stderr, _ = run_cli("train.py", *args)
    assert code == 2, stderr
    assert files(run_dir) == before
    assert len(stderr.strip().splitlines()) == 1, stderr
    return stderr.strip()


def test_resuming_a_finished_run_without_steps_left_touches_nothing(finished_run):
    error = refused(finished_run, "model=v6", *TINY, f"hydra.run.dir={finished_run}", "resume=auto")
    last = finished_run / "checkpoints" / "last.ckpt"
    assert error == f"error: {last} is at step 20, trainer.max_steps=20: raise max_steps to train on"


@pytest.mark.parametrize("other", [["model=bigram"], ["model=v6"], ["model=v6", "ckpt_path=CKPT"]])
def test_a_new_run_aimed_at_a_run_s_directory_is_refused(finished_run, tmp_path, other):
    ckpt = shutil.copy(finished_run / "checkpoints" / "last.ckpt", tmp_path / "start.ckpt")
    other = [o.replace("CKPT", str(ckpt)) for o in other]
    error = refused(finished_run, *other, *TINY, f"hydra.run.dir={finished_run}")
    assert error == (
        f"error: {finished_run} holds a run already: continue it with resume=auto, or name a new directory in hydra.run.dir"
    )


def test_printing_a_run_s_config_is_no_new_run(finished_run):
    before = files(finished_run)
    code, stderr, stdout = run_cli("train.py", "--cfg", "job", "model=bigram", f"hydra.run.dir={finished_run}")
    assert code == 0, stderr
    assert "shakegpt.models.bigram.Bigram" in stdout and files(finished_run) == before


def test_resuming_a_run_with_another_command_is_refused(finished_run):
    error = refused(finished_run, "model=v6", *TINY, "optimizer.lr=0.01", f"hydra.run.dir={finished_run}", "resume=auto")
    assert error == (
        f"error: the run in {finished_run} was started with another command (optimizer.lr=0.01 added): "
        "resume it with the command it was started with, or name a new directory"
    )


def test_resuming_a_run_whose_last_checkpoint_is_damaged_touches_nothing(finished_run):
    last = finished_run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    error = refused(finished_run, "model=v6", *TINY, "trainer.max_steps=30", f"hydra.run.dir={finished_run}", "resume=auto")
    assert error.startswith(f"error: checkpoint {last} is corrupted or truncated")


def test_a_resume_refused_as_hydra_starts_touches_nothing(finished_run):
    # threads says how the run runs, not what it trains: the same command, with a value refused
    # once Hydra has composed the config (and before it writes the run's .hydra/ and log).
    written = (finished_run / ".hydra" / "config.yaml").stat().st_mtime_ns
    error = refused(finished_run, "model=v6", *TINY, "trainer.max_steps=30", "threads=0", f"hydra.run.dir={finished_run}", "resume=auto")
    assert error == "error: threads must be a positive integer or null, got 0"
    assert (finished_run / ".hydra" / "config.yaml").stat().st_mtime_ns == written  # not written, rather than put back


def test_a_resume_refused_as_the_run_is_built_touches_nothing(finished_run, tmp_path):
    # Killed before its first last.ckpt: resume=auto takes ckpt_path=, which is read as the run is
    # built, after Hydra rewrote .hydra/ (with the new max_steps) and the log, and status.json said running.
    (finished_run / "checkpoints" / "last.ckpt").unlink()
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    error = refused(finished_run, "model=v6", *TINY, "trainer.max_steps=30", f"ckpt_path={tmp_path / 'garbage.ckpt'}",
                    f"hydra.run.dir={finished_run}", "resume=auto")
    assert error.startswith("error: ") and f"{tmp_path / 'garbage.ckpt'} is corrupted" in error


def test_resuming_a_run_whose_record_is_damaged_is_refused(finished_run):
    (finished_run / ".hydra" / "overrides.yaml").write_text("[unclosed")
    error = refused(finished_run, "model=v6", *TINY, f"hydra.run.dir={finished_run}", "resume=auto")
    assert error.startswith(f"error: {finished_run} holds no readable record of the command that started it")


@pytest.fixture
def sweep_dir(tmp_path, trained_run):
    """A sweep of two jobs started with trainer.max_steps=20,30, interrupted in its second."""
    sweep = tmp_path / "sweep"
    shutil.copytree(trained_run, sweep / "0")
    task = ["model=v6", "trainer.max_steps=20,30", *TINY[1:]]
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n" + "".join(f"    - {o}\n" for o in task))
    (sweep / "status.json").write_text('{"state": "running"}')
    return sweep


def test_a_sweep_resumed_with_another_command_is_refused(sweep_dir):
    error = refused(sweep_dir, "-m", "model=v6", "trainer.max_steps=40,30", *TINY[1:], f"hydra.sweep.dir={sweep_dir}", "resume=auto")
    assert error == (
        f"error: the sweep in {sweep_dir} was started with another command (trainer.max_steps=40,30 instead of "
        "trainer.max_steps=20,30): resume it with the command it was started with, or name a new directory"
    )


def test_a_new_sweep_aimed_at_a_sweep_s_directory_is_refused(sweep_dir):
    error = refused(sweep_dir, "-m", "model=v6", "trainer.max_steps=20,30", *TINY[1:], f"hydra.sweep.dir={sweep_dir}")
    assert error == (
        f"error: {sweep_dir} holds a sweep already: continue it with resume=auto, or name a new directory in hydra.sweep.dir"
    )


def hold_lock(directory) -> subprocess.Popen:
    """Another process holding directory's lock, as a training process does, until killed."""
    code = "import sys, time; from shakegpt.bookkeeping.locks import hold; hold(sys.argv[1]); print('held', flush=True); time.sleep(300)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(directory)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


@pytest.mark.slow
def test_a_second_resume_of_a_run_in_use_is_refused_and_a_killed_holder_leaves_no_lock(finished_run):
    resume = ["model=v6", *TINY[1:], "trainer.max_steps=30", f"hydra.run.dir={finished_run}", "resume=auto"]
    holder = hold_lock(finished_run)
    try:
        error = refused(finished_run, *resume)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert error == f"error: {finished_run.resolve()} is in use by process {holder.pid} right now: wait for it to end, or stop it"
    result = run_script("train.py", *resume)  # the kill released the lock
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout


@pytest.mark.slow
def test_a_training_process_holds_its_run_directory(tmp_path):
    """A fresh run in a directory Hydra names (no check before it) locks it when its job starts."""
    from shakegpt.bookkeeping.locks import hold
    from shakegpt.common.errors import UserError

    command = [sys.executable, str(ROOT / "train.py"), "model=bigram", *TINY, "trainer.max_steps=100000",
               f"hydra.run.dir={tmp_path}/runs/${{now:%H-%M-%S-%f}}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list((tmp_path / "runs").glob("*/status.json")) and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        run_dir = next((tmp_path / "runs").glob("*/status.json")).parent
        with pytest.raises(UserError, match=f"is in use by process {process.pid} right now"):
            hold(run_dir)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def test_a_tool_does_not_train_over_an_earlier_run(finished_run):
    from shakegpt.common.errors import UserError
    from shakegpt.tools.runner import run_training

    before = files(finished_run)
    with pytest.raises(UserError, match="holds a run from before, which a tool does not overwrite: pass --runs"):
        run_training(["model=v6", *TINY], finished_run)
    assert files(finished_run) == before
