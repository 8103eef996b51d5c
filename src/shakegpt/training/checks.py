"""The config's numbers a user can get wrong, checked before anything is built or written."""

from __future__ import annotations

from collections.abc import Mapping

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
    check_positive_int("trainer.accumulate_grad_batches", cfg.trainer.get("accumulate_grad_batches", 1))
    refuse_lightning_limits(cfg.trainer)
    check_accelerator(cfg.trainer.accelerator)


# Lightning's trainer flags that count batches of a finite, epoch-based loader. Training here is
# one endless stream of random batches, and an evaluation is data.eval_iters batches of each split
# stacked into a few chunks: these flags would cut either at the wrong place (fast_dev_run would
# also skip the checkpoints and logs a run's summary is made of). Each is refused, naming the way.
LIGHTNING_LIMITS = {  # flag -> (the values that change nothing, what to use instead)
    "fast_dev_run": ((False, 0), "for a quick run use trainer.max_steps={n} trainer.val_check_interval={n} data.eval_iters={n}"),
    "limit_train_batches": ((None, 1.0), "the length of training is trainer.max_steps"),
    "limit_val_batches": ((None, 1.0), "an evaluation scores data.eval_iters batches of each split: set data.eval_iters=N"),
    "overfit_batches": ((0, 0.0), "training draws fresh random windows at every step; to see a model memorise, "
                        "train on a small text file: data.path=<file>"),
}


def refuse_lightning_limits(trainer: Mapping) -> None:
    """Lightning's batch-limiting flags, refused in one line naming what this lab uses instead."""
    for flag, (neutral, instead) in LIGHTNING_LIMITS.items():
        value = trainer.get(flag)
        if value is not None and not any(type(value) is type(n) and value == n for n in neutral):  # 1 batch is not 1.0 (all)
            n = value if type(value) is int else 1
            raise UserError(f"trainer.{flag}={value} is not supported here: {instead.format(n=n)}")


def typed_lightning_limits(args: list[str]) -> dict:
    """The flags above as train.py's command line sets them (+trainer.fast_dev_run=true, ...),
    read before Hydra creates a run directory for a run that would be refused."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    typed = {}
    for arg in args:
        key, _, text = arg.lstrip("+~").partition("=")
        flag = key.removeprefix("trainer.")
        if key.startswith("trainer.") and flag in LIGHTNING_LIMITS:
            try:
                override = OverridesParser.create().parse_overrides([arg])[0]
            except HydraException:  # Hydra itself reports the malformed override
                continue
            typed[flag] = text if override.is_sweep_override() else override.value()
    return typed


def check_accelerator(accelerator: str) -> None:
    """A GPU trainer on a machine without one, in one line rather than Lightning's traceback."""
    has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    if accelerator == "gpu" and not has_gpu or accelerator == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={accelerator} needs a GPU and this machine has none; "
            "use trainer=cpu, or trainer.accelerator=auto to take one where there is one"
        )
