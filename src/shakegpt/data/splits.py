"""Train/val/test: contiguous parts of the corpus, in that order, by fractions of its tokens."""

from __future__ import annotations

from shakegpt.common.errors import UserError

SPLITS = ("train", "val", "test")  # every part a corpus is cut into; evaluations score EVAL_SPLITS


def parse_fractions(value) -> tuple[float, float, float]:
    """data.splits as typed: [0.9, 0.1] or [0.9, 0.05, 0.05], or the same as a string
    "0.9,0.05,0.05". Each in [0, 1], train and val above 0, summing to 1."""
    try:
        fractions = [float(part) for part in (value.split(",") if isinstance(value, str) else value)]
    except (TypeError, ValueError):  # not a sequence (a single number), or not numbers
        fractions = []
    if len(fractions) == 2:
        fractions.append(0.0)
    if len(fractions) != 3 or any(not 0 <= f <= 1 for f in fractions) or min(fractions[:2]) <= 0:
        raise UserError(
            f"data.splits must be train,val[,test] fractions, train and val above 0 (e.g. [0.9,0.05,0.05]), got {value}"
        )
    if abs(sum(fractions) - 1) > 1e-6:
        raise UserError(f"data.splits must add up to 1, got {value} (sum {sum(fractions):g})")
    return fractions[0], fractions[1], fractions[2]


def split_bounds(n_tokens: int, fractions: tuple[float, float, float]) -> dict[str, tuple[int, int]]:
    """split -> [start, end): train is the first int(train * n) tokens (the lecture's cut),
    test the last int(test * n), val what lies between."""
    train_end = int(fractions[0] * n_tokens)
    val_end = n_tokens - int(fractions[2] * n_tokens)
    return {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, n_tokens)}


def splits_key(fractions) -> str:
    return "/".join(f"{f:g}" for f in fractions)
