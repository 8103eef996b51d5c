"""train.py's task around train(cfg): signals stop the job, and a failing job of a sweep is
recorded as failed while the other jobs go on."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from shakegpt.bookkeeping.locks import holding
from shakegpt.bookkeeping.status import write_status
from shakegpt.common.errors import UserError, one_line
from shakegpt.training import slurm
from shakegpt.training.cli import continue_command, is_secondary_rank
from shakegpt.training.distributed import job_scope, use_job_subprocess_command
from shakegpt.training.interrupts import Interrupted, as_interrupt, record_interrupt, signals_interrupt
from shakegpt.training.run import train

log = logging.getLogger(__name__)


def train_job(cfg: DictConfig) -> float:
    """train.py's task: the best validation loss, which sweepers minimise. In a sweep a failing
    job is recorded as failed with its reason and returns NaN, so the other jobs go on; a signal
    stops the job, and the sweep with it, exiting 130 (SIGINT) or 143 (SIGTERM)."""
    try:
        return locked_job(cfg)
    except Interrupted as stop:
        sys.exit(stop.exit_code)


def locked_job(cfg: DictConfig) -> float:
    """The job in its run directory (Hydra's), which this process holds meanwhile; a signal
    raises Interrupted once status.json records it (shakegpt.train's task)."""
    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    use_job_subprocess_command()
    if slurm.restarted():  # a requeued job (a submitit sweep's too) runs again to continue
        cfg.resume = "auto"
    with contextlib.nullcontext() if is_secondary_rank() else holding(out):  # rank 0 holds the run
        return run_job(cfg, hydra_cfg, out)


def run_job(cfg: DictConfig, hydra_cfg, out: Path) -> float:
    received = None
    try:
        with signals_interrupt() as received, job_scope() if hydra_cfg.mode == RunMode.MULTIRUN else contextlib.nullcontext():
            return train(cfg).get("best_val_loss", float("nan"))
    except (Interrupted, Exception) as exc:
        stop = as_interrupt(exc, received)
        if stop is not None:
            record_interrupt(stop, out, continue_command())
            raise stop from None
        with contextlib.suppress(UserError, OSError):  # the disk may be what failed
            write_status(out, "failed", reason=one_line(exc))
        if hydra_cfg.mode != RunMode.MULTIRUN:
            raise
        log.error("job %s failed: %s", hydra_cfg.job.num, one_line(exc))
        return float("nan")
