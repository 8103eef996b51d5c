"""One recipe trained from a fresh process, timed against the wall clock: when each evaluation
came, when the validation loss first reached a target, how fast it trained. What cpu_race and
gpu_race compare recipes by."""

from __future__ import annotations

import statistics
from pathlib import Path

from shakegpt.bookkeeping.flops import flops_per_token
from shakegpt.tools.runner import run_training

# The CPU races' target val loss (cpu_race, and the speedrun's sprint): nanoGPT's own script ran
# its CPU recipe to val 1.8857 in 104 s on this kind of machine.
CPU_TARGET = 1.88


def race(name: str, overrides: list[str], runs: Path, target: float) -> dict:
    """Train `python train.py <overrides>` into runs/name; its validation curve as (step, loss,
    seconds since the command started), the first point at or below target, the best point,
    the median training tokens/s (as text), the device and the whole command's seconds."""
    launched = run_training(overrides, runs / name)
    run = launched.run
    curve = [(step + 1, loss, wall - launched.started) for step, loss, wall in run.scalars["val/loss"]]
    reached = next(((step, loss, seconds) for step, loss, seconds in curve if loss <= target), None)
    best = min(curve, key=lambda point: point[1])
    rates = [value for _, value, _ in run.scalars.get("perf/tokens_per_s", [])]
    rate = statistics.median(rates) if rates else None
    tokens_per_s = f"{rate:,.0f}" if rates else "not measured"
    print(f"{name}: best val {best[1]:.4f} at step {best[0]}; {target} "
          + (f"reached at step {reached[0]} after {reached[2]:.1f} s" if reached else "not reached")
          + f"; {tokens_per_s} tokens/s; whole command {launched.seconds:.1f} s", flush=True)
    return {
        "command": launched.command, "target": target, "curve": curve, "reached": reached, "best": best,
        "tokens_per_s": tokens_per_s, "rate": rate, "device": run.metrics["device"], "total": launched.seconds,
        "final": (run.metrics["final_val_loss"], run.metrics["final_train_loss"]), "run_dir": launched.directory.resolve(),
        "flops_per_token": flops_per_token(run.metrics["parameters"], run.config),
    }


def first_at_target(result: dict) -> str:
    reached = result["reached"]
    return f"val {reached[1]:.4f} at step {reached[0]}, {reached[2]:.1f} s" if reached else "not reached"


def curve_lines(results: dict[str, dict]) -> list[str]:
    return ["Curves (step: val loss at seconds):", ""] + [
        f"- {name}: `{result['command']}`: "
        + ", ".join(f"{step}: {loss:.3f} at {seconds:.0f} s" for step, loss, seconds in result["curve"])
        for name, result in results.items()
    ]
