"""DDP under Hydra: the child processes Lightning starts for ranks 1..N-1 of a job.

Lightning re-runs the script with the parent's argv and Hydra's run.dir. Under a multirun the
argv holds -m and every sweep value, so each child ran a whole sweep of its own (Lightning
#11300, Hydra #2070). Here a child runs just its job: that job's overrides, in that job's
directory. After each job the parent forgets the job's process group and DDP variables, so
the next job starts its own children.
"""

from __future__ import annotations

import contextlib
import os
import sys

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd, to_absolute_path

from shakegpt.training.lightning_private import set_ddp_child_command

# What Lightning's launcher sets in the parent's environment for its children.
DDP_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def job_subprocess_command(local_rank: int) -> tuple[list[str], str]:
    hydra_cfg = HydraConfig.get()
    command = [sys.executable, to_absolute_path(sys.argv[0]), *hydra_cfg.overrides.task]
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",  # the job's own process has written .hydra/ already
    ]
    return command, get_original_cwd()


def use_job_subprocess_command() -> None:
    set_ddp_child_command(job_subprocess_command)


@contextlib.contextmanager
def job_scope():
    """Run one job of a sweep; afterwards drop its process group and the DDP variables
    Lightning left in this process's environment."""
    saved = {name: os.environ.get(name) for name in DDP_VARIABLES}
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
