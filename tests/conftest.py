from pathlib import Path
from typing import Iterator

import pytest
import torch

from tests.helpers import TINY, run_script

pytest_plugins = ["tests.postgres"]  # the postgres_server and postgres_url fixtures


@pytest.fixture(scope="session", autouse=True)
def corpus_cache(tmp_path_factory) -> Iterator[Path]:
    """The tests' own corpus cache (their runs inherit it): the checkout's data/cache stays
    untouched, and the tests see a first prepare as a user's first run does."""
    cache = tmp_path_factory.mktemp("corpus-cache")
    with pytest.MonkeyPatch.context() as patch:  # restored at the session's end
        patch.setenv("SHAKEGPT_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One tiny v6 run through train.py, shared by the tests that need a checkpoint."""
    run_dir = tmp_path_factory.mktemp("run")
    result = run_script("train.py", "model=v6", f"hydra.run.dir={run_dir}", *TINY)
    assert result.returncode == 0, result.stderr
    return run_dir


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu run only where CUDA is: CI has none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
