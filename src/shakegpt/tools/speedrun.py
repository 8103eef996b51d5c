"""The laptop speedrun's record log: run `python train.py experiment=cpu_speedrun [overrides]
seed=S` (or experiment=cpu_sprint, the race to 1.88) once per seed, one run after another, score
each run's final weights on the whole validation split, and add the runs as one row of
docs/speedrun.md: the exact commands, the median whole-split loss and wall time (from the
command's start to the end of its final evaluation) with every run's figure, when the median
run's own estimate first reached 1.88, the date, what changed.

    python -m shakegpt.tools.speedrun --change "Muon on v12"                    # a record: 3 seeds
    python -m shakegpt.tools.speedrun --change "block 128" --seeds 1337 data.block_size=128   # a try
    python -m shakegpt.tools.speedrun --experiment cpu_sprint --change "..."    # the sprint to 1.88

A record is the median of three runs (the default seeds) on an otherwise idle machine; a row of
one run is a try, kept in the log with its figures. A row is only ever written from the runs just
made; a run over ten minutes is recorded as such, not as a record. Not a test: every figure it
writes was measured by the runs it starts.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from datetime import date
from pathlib import Path

from shakegpt.common.atomic import write_text
from shakegpt.common.errors import UserError, exit_quietly_on_ctrl_c, report_user_errors
from shakegpt.common.paths import PROJECT_ROOT
from shakegpt.evaluate import score_checkpoint
from shakegpt.tools.race import CPU_TARGET as TARGET, first_at_target, race  # the sprint: last.ckpt at or below it

LIMIT_SECONDS = 600
EXPERIMENTS = ["cpu_speedrun", "cpu_sprint"]  # ten minutes; the race to TARGET
SEEDS = [1337, 1338, 1339]  # a record is the median of three runs, one per seed
HEADER = f"""# The laptop speedrun: records

Each row is the runs of the commands shown, one per seed, one after another on this otherwise idle
2-core CPU, added by `python -m shakegpt.tools.speedrun`: with three runs (a record), the median
loss and time come first, then each run's figure; a row of one run is a try.
The goal: the lowest loss over the whole validation split (the standard split: first 90% of Tiny
Shakespeare to train, last 10% to validate; every position scored once, `python -m shakegpt.evaluate`)
within ten minutes of wall time from the command's start to the end of its final evaluation
(`experiment=cpu_speedrun`); and the shortest whole command whose last.ckpt scores {TARGET} or less on
the whole split (`experiment=cpu_sprint`). Scoring last.ckpt afterwards is not counted in the time.
The column "first evaluation at or below {TARGET}" is the run's own 20-batch estimate, at its evaluations.

| date | command | whole-split val loss (last.ckpt) | bits/char | whole command | first evaluation at or below {TARGET} | within 10 min | what changed |
|---|---|---:|---:|---:|---|---|---|
"""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--change", required=True, help="what this run changes, for the log")
    parser.add_argument("--runs", type=Path, default=PROJECT_ROOT / "runs" / "speedrun", help="where the runs go")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "speedrun.md")
    parser.add_argument("--experiment", choices=EXPERIMENTS, default="cpu_speedrun", help="the recipe (conf/experiment/)")
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS,
                        help="one run per seed, one after another; the row holds their median (a record takes 3)")
    parser.add_argument("overrides", nargs="*", help="train.py overrides after experiment=<recipe>")
    return parser


def median_run(runs: list[tuple[dict, float]]) -> tuple[dict, float]:
    """The run whose loss is the median (the lower of the middle two for an even count)."""
    ranked = sorted(runs, key=lambda run: run[1])
    return ranked[(len(ranked) - 1) // 2]


def figures(values: list[float], form: str) -> str:
    """'1.4933' for one run; '1.4933 (1.4921, 1.4933, 1.4990)' for more: the median, then each run's."""
    median = form.format(statistics.median(values))
    return median if len(values) == 1 else f"{median} ({', '.join(form.format(value) for value in values)})"


def record_row(runs: list[tuple[dict, float]], change: str) -> str:
    """One row for the runs of one command, one per seed: each command, the median loss and time
    with every run's figure, and the median run's first evaluation at the target."""
    losses = [loss for _, loss in runs]
    seconds = [result["total"] for result, _ in runs]
    within = "yes" if max(seconds) <= LIMIT_SECONDS else "**no**"
    commands = "; ".join(f"`{result['command']}`" for result, _ in runs)
    return (
        f"| {date.today().isoformat()} | {commands} | {figures(losses, '{:.4f}')} "
        f"| {statistics.median(losses) / math.log(2):.3f} | {figures(seconds, '{:.0f}')} s "
        f"| {first_at_target(median_run(runs)[0])} | {within} | {change.replace('|', '/')} |"
    )


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    if "|" in " ".join(args.overrides):
        raise UserError("an override holds '|', which would break the log's table")
    if any(override.split("=", 1)[0].lstrip("+~") == "seed" for override in args.overrides):
        raise UserError("pass seeds with --seeds, not as an override: each run gets its own")
    name = time.strftime("%Y%m%d-%H%M%S")
    runs = []
    for seed in args.seeds:
        result = race(f"{name}-seed{seed}", [f"experiment={args.experiment}", *args.overrides, f"seed={seed}"], args.runs, TARGET)
        runs.append((result, score_checkpoint(result["run_dir"] / "checkpoints" / "last.ckpt", "val", "cpu")[0]))
    row = record_row(runs, args.change)
    log = args.out.read_text() if args.out.is_file() else HEADER
    write_text(args.out, log.rstrip("\n") + "\n" + row + "\n")
    print(row)
    loss = median_run(runs)[1]
    side = "at or below" if loss <= TARGET else "above"
    print(f"whole-split val loss {loss:.4f} (median of {len(runs)}), {side} {TARGET}, "
          f"whole command {statistics.median(result['total'] for result, _ in runs):.1f} s (median)")


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
