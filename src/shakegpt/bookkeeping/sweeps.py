"""Hydra multirun glue: a summary when a sweep ends, and the Optuna sweeper's dropout search."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from shakegpt.bookkeeping.locks import hold
from shakegpt.bookkeeping.runs import job_dirs
from shakegpt.bookkeeping.sweep_summary import write_sweep_summary
from shakegpt.bookkeeping.status import write_status
from shakegpt.common.errors import report_user_errors

log = logging.getLogger(__name__)


class SweepSummary(Callback):
    """Writes summary.md/.csv and curves.png into the sweep directory; the multirun exits
    non-zero only when every job failed. The sweep's own status.json says whether it ended,
    which is how resume=auto finds an unfinished sweep."""

    @report_user_errors
    def on_multirun_start(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        sweep.mkdir(parents=True, exist_ok=True)
        hold(sweep)  # train.py took it already when the command named the directory
        write_status(sweep, "running")

    @report_user_errors  # a summary that cannot be written: one line, exit 2
    def on_multirun_end(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        if not job_dirs(sweep):  # an Optuna study that already had its n_trials: nothing ran
            write_status(sweep, "finished")
            log.info("no job ran in %s", sweep)
            return
        rows = write_sweep_summary(sweep)
        write_status(sweep, "finished")
        failed = [r for r in rows if r["status"].startswith("failed")]
        log.info("sweep summary: %s (%d of %d jobs failed)", sweep / "summary.md", len(failed), len(rows))
        if rows and len(failed) == len(rows):
            print(f"error: every job of the sweep failed; see {sweep / 'summary.md'}", file=sys.stderr)
            sys.exit(1)


def suggest_dropout(config, trial) -> None:
    """Optuna's search over model.dropout, only for versions that have dropout (v7): v2..v6 have
    none, and overriding a key a model lacks is an error."""
    if "dropout" in config.model:
        trial.suggest_float("model.dropout", 0.0, 0.3)
