"""Learning-rate schedules as a factor of the base rate at each optimizer step.

constant: the lecture. step: a 10x decay late in training (train at the rate a range test found,
then settle). cosine: nanoGPT's linear warmup then cosine decay to min_lr_ratio of the base rate
at the last step.
"""

from __future__ import annotations

import math
from functools import partial

from torch.optim.lr_scheduler import LambdaLR

from shakegpt.common.config import check_non_negative_int
from shakegpt.common.errors import UserError

NAMES = ("constant", "step", "cosine")


def lr_factor(
    step: int,
    name: str,
    max_steps: int,
    decay_at: float = 0.8,
    decay_factor: float = 0.1,
    warmup_steps: int = 100,
    min_lr_ratio: float = 0.1,
) -> float:
    if name == "constant":
        return 1.0
    if name == "step":
        return decay_factor if step >= decay_at * max_steps else 1.0
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def check_schedule(name: str, decay_at=0.8, decay_factor=0.1, warmup_steps=100, min_lr_ratio=0.1) -> None:
    if name not in NAMES:
        raise UserError(f"scheduler.name must be one of {', '.join(NAMES)}, got {name!r}")
    if not 0 <= decay_at <= 1:
        raise UserError(f"scheduler.decay_at is a fraction of training in [0, 1], got {decay_at}")
    if not 0 < decay_factor <= 1 or not 0 <= min_lr_ratio <= 1:
        raise UserError("scheduler.decay_factor must be in (0, 1] and scheduler.min_lr_ratio in [0, 1]")
    check_non_negative_int("scheduler.warmup_steps", warmup_steps)


def make_scheduler(optimizer, max_steps: int, name: str = "constant", **settings) -> LambdaLR:
    return LambdaLR(optimizer, partial(lr_factor, name=name, max_steps=max_steps, **settings))
