"""The search space: Hydra's sweep syntax (choice, range, interval, tag(log, ...)) as Optuna
distributions, and a trial's parameters back as overrides."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.errors import HydraException

from shakegpt.common.config import flatten
from shakegpt.common.errors import UserError


@dataclass
class SearchSpace:
    distributions: dict = field(default_factory=dict)  # name -> optuna distribution
    fixed: dict = field(default_factory=dict)  # name -> the override every trial gets, as typed

    def probe(self) -> list[str]:
        """Overrides with one point of the space: what the config must accept from every trial."""
        points = {name: d.choices[0] if hasattr(d, "choices") else d.low for name, d in self.distributions.items()}
        return list(self.fixed.values()) + [as_override(name, value) for name, value in points.items()]


def parse_space(params: dict | None, arguments: list[str]) -> SearchSpace:
    """hydra.sweeper.params, then the command line's own overrides: a sweep on the command line
    ('optimizer.lr=interval(1e-4,1e-2)') joins the space, a plain value is fixed for every trial."""
    # Nested keys too: +hydra.sweeper.params.model.dropout=... on the command line nests them.
    lines = [f"{key}={value}" for key, value in flatten(params or {}).items()] + list(arguments)
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except HydraException as exc:
        raise UserError(f"search space: {str(exc).splitlines()[0]}") from None
    space = SearchSpace()
    for override in overrides:
        name = override.get_key_element()
        if override.is_sweep_override():
            try:
                space.distributions[name] = distribution(override)
            except ValueError as exc:  # Optuna's check of the bounds: interval(5, 1), say
                raise UserError(f"search space: {override.input_line}: {exc}") from None
            space.fixed.pop(name, None)
        else:
            space.fixed[name] = override.input_line
            space.distributions.pop(name, None)
    return space


def distribution(override: Override):
    """The Optuna distribution of one sweep override: choice (and a shuffled range) is
    categorical; range(a, b, step) is a, a+step, ... below b; interval(a, b) is uniform;
    tag(log, interval(a, b)) is log-uniform, tag(int, ...) over integers."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    sweep = override.value()
    name = override.get_key_element()
    if override.is_choice_sweep() or (override.is_range_sweep() and sweep.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():  # as in Python, range(2, 7) is 2..6
        values = list(override.sweep_iterator())
        if not values:
            raise UserError(f"search space: {override.input_line} is empty")
        if any(isinstance(x, float) for x in values):  # rounded: 0.1 * 3 is 0.30000000000000004
            return FloatDistribution(round(min(values), 10), round(max(values), 10), step=abs(sweep.step))
        return IntDistribution(min(values), max(values), step=abs(sweep.step))
    if override.is_interval_sweep():
        log = "log" in sweep.tags
        if log and sweep.start <= 0:
            raise UserError(f"search space: {name}: a log interval must start above 0, got {sweep.start}")
        if "int" in sweep.tags:  # Hydra reads an interval's ends as floats
            return IntDistribution(int(sweep.start), int(sweep.end), log=log)
        return FloatDistribution(sweep.start, sweep.end, log=log)
    raise UserError(f"search space: {name}: {override.input_line} is not a sweep Optuna can sample")


def stored_params_problem(params: dict, distributions: dict) -> str | None:
    """Why a trial's parameters, read from a study's storage, are not a point of this search
    space (names and values), or None. A study file may come from elsewhere: only a point of the
    space the user typed may become overrides."""
    if set(params) != set(distributions):
        unknown = sorted(set(params) - set(distributions)) or sorted(set(distributions) - set(params))
        return f"its parameters ({', '.join(map(repr, unknown[:3]))}) are not this search space's"
    for name, value in params.items():
        if not contains(distributions[name], value):
            return f"its {name}={value!r} lies outside this search space"
    return None


def contains(distribution, value) -> bool:
    """Whether value is one of the distribution's points (Optuna's own test is private)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return any(type(value) is type(choice) and value == choice for choice in distribution.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if isinstance(distribution, IntDistribution) and not isinstance(value, int):
        return False
    if not distribution.low <= value <= distribution.high:
        return False
    step = distribution.step
    return not step or abs(round((value - distribution.low) / step) * step + distribution.low - value) <= 1e-8 * max(1, abs(value))


PLAIN = re.compile(r"[\w.:/+\-@]+")


def as_override(name: str, value) -> str:
    """name=value in Hydra's override grammar; a string that is not a plain word is quoted."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif value is None:
        text = "null"
    elif isinstance(value, str) and not PLAIN.fullmatch(value):
        text = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    else:
        text = str(value)
    return f"{name}={text}"
