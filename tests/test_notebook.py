"""The lecture's notebook, run for real in a Jupyter kernel of this interpreter."""

import contextlib
import json
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tests.helpers import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LECTURE = ROOT / "notebooks" / "lecture.ipynb"
INSTALL_TAG = "colab-install"  # the cell that clones and installs the project on a fresh machine
WIDGET = "application/vnd.jupyter.widget-view+json"  # what a progress bar drawn as a widget sends


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
