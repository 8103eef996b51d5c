"""The lecture's notebook, run for real in a Jupyter kernel of this interpreter, and a notebook's
habits: the progress bar, the stop button, a cell run twice, one-line errors, DDP refused."""

import contextlib
import json
import queue
import sys
import time
from pathlib import Path

import nbformat
import pytest

from shakegpt.bookkeeping.checkpoints import read_checkpoint
from tests.helpers import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LECTURE = ROOT / "notebooks" / "lecture.ipynb"
INSTALL_TAG = "colab-install"  # the cell that clones and installs the project on a fresh machine
WIDGET = "application/vnd.jupyter.widget-view+json"  # what a progress bar drawn as a widget sends
QUICK = '"model=v2", "trainer.val_check_interval=10", "data.eval_iters=2", "sample_tokens=0"'


@contextlib.contextmanager
def venv_kernel(cwd: Path):
    """A started Jupyter kernel of this interpreter (the project's venv, not whatever Jupyter
    is installed globally), working in cwd: (its manager, a blocking client)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = cwd / ".kernels" / "shakegpt-venv"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "shakegpt", "language": "python"}))
    manager = KernelManager(kernel_name="shakegpt-venv", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]))
    manager.start_kernel(cwd=str(cwd))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        yield manager, client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_committed_notebooks_hold_no_outputs():
    assert LECTURE in NOTEBOOKS
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip its outputs"


def test_the_install_cell_comes_first_and_acts_only_on_colab():
    code = [cell for cell in nbformat.read(LECTURE, as_version=4).cells if cell.cell_type == "code"]
    assert INSTALL_TAG in code[0].metadata.get("tags", [])
    assert 'if "google.colab" in sys.modules' in code[0].source and "pip" in code[0].source


@pytest.mark.slow
def test_the_lecture_notebook_runs_end_to_end_in_a_jupyter_kernel(tmp_path):
    from nbclient import NotebookClient

    notebook = nbformat.read(LECTURE, as_version=4)
    notebook.cells = [cell for cell in notebook.cells if INSTALL_TAG not in cell.metadata.get("tags", [])]
    start = time.monotonic()
    with venv_kernel(tmp_path) as (manager, _):
        NotebookClient(notebook, km=manager, timeout=300, allow_errors=False).execute()  # a cell's error fails the test
    seconds = time.monotonic() - start
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert sum("image/png" in output.get("data", {}) for output in outputs) >= 6  # the plots, drawn inline
    assert any(WIDGET in output.get("data", {}) for output in outputs)  # the progress bars
    print(f"the notebook ran in {seconds:.0f} s")
    assert seconds < 300, f"the notebook took {seconds:.0f} s, over the 5 minutes it is meant to take on 2 cores"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("kernel")
    with venv_kernel(cwd) as (manager, client):
        assert run_cell(client, "import shakegpt")["status"] == "ok"
        yield manager, client, cwd


def run_cell(client, code: str, timeout: float = 180, messages: list | None = None) -> dict:
    """The reply's content of running code in the kernel; its output messages go to messages."""
    hook = messages.append if messages is not None else (lambda message: None)
    reply = client.execute_interactive(code, timeout=timeout, output_hook=hook, store_history=True)
    return reply["content"]


@pytest.mark.slow
def test_a_user_error_shows_as_one_line(kernel):
    _, client, _ = kernel
    reply = run_cell(client, 'shakegpt.load_run("no-such-run")')
    assert reply["traceback"] == ["UserError: no-such-run is not a shakegpt run directory (no .hydra/config.yaml)"]
    reply = run_cell(client, f'shakegpt.train({QUICK}, "trainer=ddp_cpu")')
    assert reply["ename"] == "UserError" and len(reply["traceback"]) == 1 and "from the command line" in reply["traceback"][0]


@pytest.mark.slow
def test_the_same_cell_twice_makes_two_runs_with_a_progress_bar_and_figures_show(kernel):
    _, client, cwd = kernel
    cell = f'runs = globals().setdefault("runs", []); runs.append(shakegpt.train({QUICK}, "trainer.max_steps=10"))'
    messages = []
    for _ in range(2):
        assert run_cell(client, cell, messages=messages)["status"] == "ok"
    assert run_cell(client, 'assert len({run.path for run in runs}) == 2 and {run.state for run in runs} == {"finished"}')["status"] == "ok"
    assert any(WIDGET in message["content"].get("data", {}) for message in messages)
    shown = []  # a figure shows without %matplotlib inline, which this kernel never ran
    assert run_cell(client, "runs[0].plot()", messages=shown)["status"] == "ok"
    assert any("image/png" in message["content"].get("data", {}) for message in shown)


@pytest.mark.slow
def test_the_stop_button_stops_training_at_a_checkpoint_and_the_kernel_lives(kernel):
    manager, client, cwd = kernel
    run_dir = cwd / "stopped"
    msg_id = client.execute(f'shakegpt.train({QUICK}, "trainer.max_steps=100000", run_dir={str(run_dir)!r})')
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists():  # written at the first evaluation, step 10
        assert time.monotonic() < deadline, "training did not reach its first evaluation in 120 s"
        time.sleep(0.1)
    manager.interrupt_kernel()
    reply = shell_reply(client, msg_id)
    assert reply["ename"] == "TrainingInterrupted", reply
    assert len(reply["traceback"]) == 1 and "continue with shakegpt.train(" in reply["traceback"][0]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted" and status["signal"] == "SIGINT"
    assert 10 <= status["steps"] == read_checkpoint(last)["global_step"] < 100000
    assert manager.is_alive() and run_cell(client, "1 + 1")["status"] == "ok"


def shell_reply(client, msg_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            message = client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no reply within {timeout} s") from None
        if message["parent_header"].get("msg_id") == msg_id:
            return message["content"]
