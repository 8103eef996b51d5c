"""status.json in each run directory: running, finished or failed, for reports and sweeps."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from shakegpt.atomic import write_json

STATUS_FILE = "status.json"


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_status(run_dir: Path, state: str, **fields) -> None:
    """Merge fields into the run's status; state is 'running', 'finished' or 'failed'.
    Only the global rank 0 process of a distributed run writes it."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only  # not needed to read a status

    if rank_zero_only.rank != 0:
        return
    status = read_status(run_dir) | fields | {"state": state, "updated": time.time()}
    if state == "running":
        status.setdefault("started", time.time())
        status["pid"] = os.getpid()
    write_json(Path(run_dir) / STATUS_FILE, status)
