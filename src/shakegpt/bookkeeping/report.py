"""Run reports: every figure is read from a run's own files; what was not logged says so."""

from __future__ import annotations

import math

from shakegpt.bookkeeping.flops import flops_per_token
from shakegpt.bookkeeping.runs import Run, timing
from shakegpt.common.config import flatten

NOT_MEASURED = "not measured"


def fmt(value, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_MEASURED
    return format(value, spec)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return NOT_MEASURED
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def figures(run: Run) -> dict[str, str]:
    """The run's figures as printable strings, in the order a report shows them."""
    step, max_steps = run.step, run.max_steps
    elapsed, eta = timing(run)
    tokens_per_s = run.last("perf/tokens_per_s")
    flops = flops_per_token(run.status.get("parameters"), run.config)
    progress = f"{step:,} / {max_steps:,} ({100 * step / max_steps:.0f}%)" if step and max_steps else NOT_MEASURED
    rows = {
        "status": run.status_line,
        "step": progress,
        "elapsed": fmt_seconds(elapsed),
    }
    if run.state == "running":
        rows["ETA"] = fmt_seconds(eta)
    val_last, train_last = run.last("val/loss"), run.last("train/loss")
    rows |= {
        "train loss (last / best)": f"{fmt(train_last)} / {fmt(run.best('train/loss'))}",
        "val loss (last / best)": f"{fmt(val_last)} / {fmt(run.best('val/loss'))}",
        "val perplexity (last / best)": f"{fmt(run.last('val/perplexity'), '.2f')} / {fmt(run.best('val/perplexity'), '.2f')}",
        "val bpc (last / best)": f"{fmt(run.last('val/bpc'))} / {fmt(run.best('val/bpc'))}",
        "tokens/s (last interval)": fmt(tokens_per_s, ",.0f"),
        "parameters": fmt(run.status.get("parameters"), ","),
        "device": run.metrics.get("device", NOT_MEASURED),
        "FLOPs per token (estimated)": fmt(flops, ",.0f"),
        "achieved FLOP/s (estimated)": fmt(flops * tokens_per_s, ".3g") if flops and tokens_per_s else NOT_MEASURED,
    }
    return rows


def last_sample(run: Run) -> str:
    return run.samples[-1][1] if run.samples else NOT_MEASURED


def run_report(run: Run) -> str:
    lines = [f"run: {run.path}", f"overrides: {' '.join(run.overrides) or '(none)'}"]
    lines += [f"{name}: {value}" for name, value in figures(run).items()]
    step = f" (step {run.samples[-1][0]})" if run.samples else ""
    lines += ["", f"last sample{step}:", last_sample(run)]
    return "\n".join(lines)


def compare_report(a: Run, b: Run) -> str:
    flat_a, flat_b = flatten(a.config), flatten(b.config)
    differing = sorted(k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k) != flat_b.get(k))
    lines = [f"A: {a.path}", f"B: {b.path}", "", "config differences:"]
    lines += [f"  {k}: {flat_a.get(k, '(absent)')} -> {flat_b.get(k, '(absent)')}" for k in differing] or ["  (none)"]
    fa, fb = figures(a), figures(b)
    width = max(len(k) for k in fa)
    lines += ["", f"{'':{width}}  {'A':<28}  B"]
    lines += [f"{k:{width}}  {fa[k]:<28}  {fb.get(k, NOT_MEASURED)}" for k in fa]
    lines += ["", "sample A:", last_sample(a), "", "sample B:", last_sample(b)]
    return "\n".join(lines)
