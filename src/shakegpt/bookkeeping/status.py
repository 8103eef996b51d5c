"""status.json in each run directory: running, finished, failed, interrupted, requeued (a SLURM
job stopped to run again) or pruned (an Optuna trial stopped early), for reports, sweeps and resume."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from shakegpt.common.atomic import write_json

STATUS_FILE = "status.json"


def read_json_object(path: Path) -> dict:
    """A run's own JSON record (status.json, metrics.json) as a dict; {} when it is missing, cut
    short or not an object (a run directory may come from elsewhere)."""
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def read_status(run_dir: Path) -> dict:
    return read_json_object(Path(run_dir) / STATUS_FILE)


def write_status(run_dir: Path, state: str, **fields) -> None:
    """Merge fields into the run's status; state is 'running', 'finished', 'failed',
    'interrupted' or 'requeued'. Only the global rank 0 process of a distributed run writes it. A run resumed
    by a new process keeps the seconds its earlier processes ran in earlier_seconds, so its
    elapsed time leaves out the pause between them."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only  # not needed to read a status

    if rank_zero_only.rank != 0:
        return
    previous, now = read_status(run_dir), time.time()
    status = previous | fields | {"state": state, "updated": now}
    if state == "running" and previous.get("pid") != os.getpid():
        if "started" in previous:
            status["earlier_seconds"] = previous.get("earlier_seconds", 0) + previous["updated"] - previous["started"]
        status["started"], status["pid"] = now, os.getpid()
    write_json(Path(run_dir) / STATUS_FILE, status)
