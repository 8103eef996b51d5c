"""The tests' own helpers report what happened: an exit code as the shell sees it, a run that
never reached its step as such, and no environment left behind by the session."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT, kill_train_after, run_cli


@pytest.mark.parametrize("exit, code, stderr", [
    ("sys.exit()", 0, ""),
    ("sys.exit(None)", 0, ""),
    ("sys.exit(3)", 3, ""),
    ("sys.exit('no luck')", 1, "no luck\n"),
    ("pass", 0, ""),
])
def test_run_cli_gives_the_exit_code_a_shell_sees(exit, code, stderr, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(f"import sys\n{exit}\n")
    assert run_cli(str(script))[:2] == (code, stderr)


@pytest.mark.slow  # a train.py start
def test_a_run_that_ends_before_its_step_is_reported_with_its_error(tmp_path):
    with pytest.raises(AssertionError, match=r"train.py ended \(exit 2\) before step 5: error: data.batch_size must be a positive integer"):
        kill_train_after(["model=v6", "data.batch_size=0"], tmp_path / "run", 5)


def test_a_run_that_does_not_reach_its_step_in_time_is_a_timeout(tmp_path):
    with pytest.raises(AssertionError, match=r"train.py did not save step 5 to .*last.ckpt within 0.5 s"):
        kill_train_after(["model=bigram"], tmp_path / "run", 5, timeout=0.5)


def test_the_session_s_corpus_cache_is_the_tests_own_and_undone_after_it(tmp_path):
    """conftest's corpus_cache sets SHAKEGPT_CACHE for the session and restores the caller's."""
    (tmp_path / "test_cache.py").write_text(
        "import os\n\ndef test_cache():\n    assert os.environ['SHAKEGPT_CACHE'] not in ('', 'before')\n"
    )
    session = (
        "import os, pytest; os.environ['SHAKEGPT_CACHE'] = 'before'; "
        f"code = pytest.main(['-q', '-p', 'no:xdist', '-p', 'tests.conftest', '-p', 'no:cacheprovider', {str(tmp_path)!r}]); "
        "print(int(code), os.environ.get('SHAKEGPT_CACHE'))"
    )
    result = subprocess.run([sys.executable, "-c", session], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines()[-1] == "0 before", result.stdout + result.stderr
