"""The config's numbers a user can get wrong, checked before anything is built or written."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from shakegpt.common.config import check_int_range, check_positive, check_positive_int, check_seed
from shakegpt.common.errors import UserError
from shakegpt.training.lr_finder import check_range
from shakegpt.training.optimizers import check_optimizer_numbers
from shakegpt.training.schedules import check_schedule


# The text sample at each evaluation costs one forward pass of the model a token, every
# evaluation; longer texts are sample.py's work.
MAX_SAMPLE_TOKENS = 10_000


def check_config(cfg: DictConfig) -> None:
    """The numbers a user can get wrong, checked before anything is built or written."""
    check_seed("seed", cfg.seed)
    check_int_range("sample_tokens", cfg.sample_tokens, 0, MAX_SAMPLE_TOKENS,
                    " (a forward pass a token at every evaluation; sample.py writes longer texts)")
    lr = cfg.optimizer.lr
    if lr != "auto" and not (isinstance(lr, (int, float)) and lr > 0):
        raise UserError(f"optimizer.lr must be a positive number or 'auto', got {lr}")
    check_optimizer_numbers(cfg.optimizer)
    check_range(**cfg.lr_range_test)
    for key in ("max_steps", "val_check_interval", "log_every_n_steps"):
        check_positive_int(f"trainer.{key}", cfg.trainer.get(key))
    check_schedule(**cfg.scheduler)
    if cfg.resume not in (None, "auto"):
        raise UserError(f"resume must be auto or null, got {cfg.resume}")
    every = cfg.checkpoint
    if (every.every_n_steps is None) == (every.every_minutes is None):
        raise UserError("set exactly one of checkpoint.every_n_steps and checkpoint.every_minutes")
    for key in ("every_n_steps", "every_minutes"):
        if every[key] is not None:
            check_positive(f"checkpoint.{key}", every[key])
    if cfg.compile not in (True, False, "auto"):
        raise UserError(f"compile must be true, false or auto, got {cfg.compile}")
    check_positive_int("threads", cfg.threads, or_null=True)
    check_accelerator(cfg.trainer.accelerator)


def check_accelerator(accelerator: str) -> None:
    """A GPU trainer on a machine without one, in one line rather than Lightning's traceback."""
    has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    if accelerator == "gpu" and not has_gpu or accelerator == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={accelerator} needs a GPU and this machine has none; "
            "use trainer=cpu, or trainer.accelerator=auto to take one where there is one"
        )
