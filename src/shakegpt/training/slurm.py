"""Running as a SLURM job: one path for preemption and requeue.

SLURM warns a job before its time limit with the signal sbatch's --signal names (USR1 with
`--signal=USR1@90`; hydra/launcher=slurm's submitit jobs get submitit's USR2). Under SLURM that
signal stops the run as Ctrl-C does (last.ckpt at the step reached), status.json says
`requeued`, and global rank 0 asks SLURM to run the job again (`scontrol requeue`). SLURM then
ends the job (SIGTERM, SIGKILL after its grace period) and starts the same command again with
SLURM_RESTART_COUNT set: that run continues from last.ckpt as resume=auto does. Lightning's own
requeue (hpc_ckpt_N.ckpt at the run directory's top, restored with its own step count) is turned
off, so there is one checkpoint and one status to read. SIGTERM alone (scancel, a preemption
that SLURM requeues itself) stops the run with last.ckpt as anywhere else.
"""

from __future__ import annotations

import os
import signal
import subprocess

from lightning.fabric.plugins.environments import SLURMEnvironment


def job_id() -> str | None:
    """This SLURM batch job's id; None outside SLURM and in an interactive allocation (a job
    named bash or interactive, which Lightning does not treat as SLURM either)."""
    found = SLURMEnvironment.job_id()
    return None if found is None else str(found)


def requeue_signals() -> tuple[signal.Signals, ...]:
    """The signals that requeue the job: SIGUSR1 and submitit's (SUBMITIT_PREEMPT_SIGNAL,
    USR2 unless set); none outside SLURM."""
    if job_id() is None:
        return ()
    submitit = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)
    return tuple(dict.fromkeys((signal.SIGUSR1, submitit)))


def restarted() -> bool:
    """Whether SLURM started this job again after a requeue (it counts them)."""
    return job_id() is not None and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def cluster_plugins() -> list:
    """The Trainer's plugins for SLURM: its environment (ranks, nodes, address) with Lightning's
    auto-requeue off, so the requeue signal reaches only shakegpt's StopOnSignal."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def request_requeue() -> str | None:
    """Ask SLURM to run this job again; None once asked, else why it could not be."""
    try:
        result = subprocess.run(["scontrol", "requeue", job_id()], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scontrol requeue could not run: {exc}"
    if result.returncode != 0:
        return f"scontrol requeue failed: {(result.stderr or result.stdout).strip() or f'exit {result.returncode}'}"
    return None
