"""Checks on the numbers a user types, each worded once, and the config as flat dotted keys."""

from __future__ import annotations

from shakegpt.common.errors import UserError


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(name: str, value, or_null: bool = False) -> None:
    if or_null and value is None:
        return
    if not is_int(value) or value < 1:
        raise UserError(f"{name} must be a positive integer{' or null' if or_null else ''}, got {value}")


def check_non_negative_int(name: str, value) -> None:
    if not is_int(value) or value < 0:
        raise UserError(f"{name} must be a non-negative integer, got {value}")


MAX_SEED = 2**32 - 1  # the range numpy's generator, and so Lightning's seed_everything, accepts


def check_int_range(name: str, value, low: int, high: int, note: str = "") -> None:
    if not is_int(value) or not low <= value <= high:
        raise UserError(f"{name} must be an integer from {low} to {high}{note}, got {value}")


def check_seed(name: str, value) -> None:
    check_int_range(name, value, 0, MAX_SEED)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_positive(name: str, value) -> None:
    if not is_number(value):
        raise UserError(f"{name} must be a positive number, got {value}")
    if not value > 0:  # nan too
        raise UserError(f"{name} must be positive, got {value}")


def check_non_negative(name: str, value) -> None:
    if not (is_number(value) and value >= 0):
        raise UserError(f"{name} must be a number, 0 or more, got {value}")


def check_fraction(name: str, value, low_open: bool = False, high_open: bool = True) -> None:
    """value in [0, 1), or (0, 1], ... as the flags say."""
    low_ok = is_number(value) and (value > 0 if low_open else value >= 0)
    high_ok = is_number(value) and (value < 1 if high_open else value <= 1)
    if not (low_ok and high_ok):
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise UserError(f"{name} must be in {interval}, got {value}")


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}: a config as the keys a user overrides."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
