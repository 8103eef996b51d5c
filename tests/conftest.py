import subprocess
import sys
from pathlib import Path

import pytest

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
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One tiny v6 run through train.py, shared by the tests that need a checkpoint."""
    run_dir = tmp_path_factory.mktemp("run")
    result = run_script("train.py", "model=v6", f"hydra.run.dir={run_dir}", *TINY)
    assert result.returncode == 0, result.stderr
    return run_dir


def run_cli(script: str, *args: str) -> tuple[int, str, str]:
    """Run an entry point in this process (fast: no second torch import); (exit code, stderr,
    stdout). For what stops before training: error paths, sampling, reports."""
    import contextlib
    import io
    import runpy

    saved = sys.argv
    sys.argv = [str(ROOT / script), *args]
    stderr, stdout = io.StringIO(), io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            runpy.run_path(str(ROOT / script), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved
    return code, stderr.getvalue(), stdout.getvalue()
