"""The laptop speedrun's record log: run `python train.py experiment=cpu_speedrun [overrides]`
(or experiment=cpu_sprint, the race to 1.88), score its final weights on the whole validation
split, and add the run as a row of docs/speedrun.md: the exact command, the whole-split loss, the
wall time from the command's start to the end of its final evaluation, when its own estimate
first reached 1.88, the date, what changed.

    python -m shakegpt.tools.speedrun --change "Muon on v12"                    # the recipe as it is
    python -m shakegpt.tools.speedrun --change "block 128" data.block_size=128   # a variation
    python -m shakegpt.tools.speedrun --experiment cpu_sprint --change "..."    # the sprint to 1.88

A row is only ever written from the run just made; a run over ten minutes is recorded as such,
not as a record. Not a test: every figure it writes was measured by the run it starts.
"""

from __future__ import annotations

import argparse
import math
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
HEADER = f"""# The laptop speedrun: records

Each row is one run of the command shown, on this 2-core CPU, added by `python -m shakegpt.tools.speedrun`.
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
    parser.add_argument("overrides", nargs="*", help="train.py overrides after experiment=<recipe>")
    return parser


def record_row(result: dict, loss: float, change: str) -> str:
    within = "yes" if result["total"] <= LIMIT_SECONDS else "**no**"
    return (
        f"| {date.today().isoformat()} | `{result['command']}` | {loss:.4f} | {loss / math.log(2):.3f} "
        f"| {result['total']:.0f} s | {first_at_target(result)} | {within} | {change.replace('|', '/')} |"
    )


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    if "|" in " ".join(args.overrides):
        raise UserError("an override holds '|', which would break the log's table")
    name = time.strftime("%Y%m%d-%H%M%S")
    result = race(name, [f"experiment={args.experiment}", *args.overrides], args.runs, TARGET)
    loss, _, _ = score_checkpoint(result["run_dir"] / "checkpoints" / "last.ckpt", "val", "cpu")
    row = record_row(result, loss, args.change)
    log = args.out.read_text() if args.out.is_file() else HEADER
    write_text(args.out, log.rstrip("\n") + "\n" + row + "\n")
    print(row)
    side = "at or below" if loss <= TARGET else "above"
    print(f"whole-split val loss {loss:.4f}, {side} {TARGET}, whole command {result['total']:.1f} s")


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
