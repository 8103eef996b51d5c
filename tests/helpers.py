"""What the tests share: the project root, a tiny run's overrides, and ways to run the entry points."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Enough to exercise every stage of a run in a few seconds.
TINY = [
    "trainer.max_steps=20",
    "trainer.val_check_interval=10",
    "trainer.log_every_n_steps=5",
    "data.eval_iters=2",
    "sample_tokens=20",
]


def run_script(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """An entry point in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def kill_train_after(overrides: list[str], run_dir: Path, step: int, timeout: float = 120) -> int:
    """Start `train.py overrides` in run_dir, SIGKILL it once last.ckpt holds `step` or more
    steps, and return the step its last.ckpt holds then. A run that ends first, or does not get
    there within timeout seconds, fails the test saying which."""
    import signal
    import tempfile
    import time

    from shakegpt.bookkeeping.checkpoints import read_checkpoint

    command = [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + timeout
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            while not (last.exists() and read_checkpoint(last)["global_step"] >= step):
                if process.poll() is not None:
                    stderr.seek(0)
                    raise AssertionError(f"train.py ended (exit {process.returncode}) before step {step}: {stderr.read()[-2000:]}")
                if time.time() > deadline:
                    raise AssertionError(f"train.py did not save step {step} to {last} within {timeout} s")
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    return read_checkpoint(last)["global_step"]


def commands() -> list[str]:
    """Every command a user runs: the scripts at the root (train.py, ...), then each module of
    src/shakegpt with a __main__ block, as `python -m` names it (shakegpt.evaluate, ...)."""
    modules = [
        ".".join(path.relative_to(ROOT / "src").with_suffix("").parts)
        for path in (ROOT / "src" / "shakegpt").rglob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    ]
    return sorted(path.name for path in ROOT.glob("*.py")) + sorted(modules)


def run_cli(command: str, *args: str) -> tuple[int, str, str]:
    """Run an entry point in this process (fast: no second torch import); (exit code, stderr,
    stdout). command: a script (train.py) or a module as after `python -m` (shakegpt.evaluate).
    For what stops before training: error paths, sampling, reports."""
    import contextlib
    import io
    import runpy
    import signal
    import warnings

    import torch

    saved, on_ctrl_c = sys.argv, signal.getsignal(signal.SIGINT)  # the scripts set their own Ctrl-C handler first
    threads = torch.get_num_threads()  # sample.py sets them by model size: later tests keep this process's
    sys.argv = [str(ROOT / command) if command.endswith(".py") else "-m", *args]  # argv[0] as python sets it
    stderr, stdout = io.StringIO(), io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout), warnings.catch_warnings():
            if command.endswith(".py"):
                runpy.run_path(str(ROOT / command), run_name="__main__")
            else:  # runpy warns when an earlier test imported the module: running it again is the point
                warnings.simplefilter("ignore", RuntimeWarning)
                runpy.run_module(command, run_name="__main__", alter_sys=True)
    except SystemExit as exc:  # as the interpreter ends: None is success, a message is printed and 1
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=stderr)
    finally:
        sys.argv = saved
        signal.signal(signal.SIGINT, on_ctrl_c)
        torch.set_num_threads(threads)
    return code, stderr.getvalue(), stdout.getvalue()


def loss_before_and_after(model, optimizer, steps: int, batch: int, block: int) -> tuple[float, float]:
    """The loss on fixed Tiny Shakespeare windows before and after `steps` optimizer steps on
    random ones: what 'a few steps lower the loss' tests compare."""
    import torch

    from shakegpt.data import random_windows, read_corpus

    data = torch.tensor(model.tokenizer.encode(read_corpus(None)[:20_000]))
    generator = torch.Generator().manual_seed(0)
    x, y = random_windows(data, 8 * batch, block, generator)
    initial = model.loss(x, y).item()
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(*random_windows(data, batch, block, generator)).backward()
        optimizer.step()
    return initial, model.loss(x, y).item()
