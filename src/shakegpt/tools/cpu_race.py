"""experiment=cpu_fast against nanoGPT's CPU recipe (experiment=nanogpt_cpu), side by side on
this machine: wall time from the command's start to each evaluation, and when each first
reaches the target loss. Writes docs/cpu_race.md.

    python -m shakegpt.tools.cpu_race                   # the two recipes as shipped, one after the other
    python -m shakegpt.tools.cpu_race --ten-minutes     # and cpu_fast scaled to ten minutes

Not a test: every figure it writes was measured by the runs it starts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shakegpt.common.errors import exit_quietly_on_ctrl_c, report_user_errors
from shakegpt.common.paths import PROJECT_ROOT
from shakegpt.tools.pages import tool_command, write_page
from shakegpt.tools.race import CPU_TARGET as TARGET
from shakegpt.tools.race import curve_lines, first_at_target, race

RECIPES = {
    "nanogpt_cpu": ["experiment=nanogpt_cpu"],
    "cpu_fast": ["experiment=cpu_fast"],
}
# cpu_fast's recipe with its schedule stretched over what fits ten minutes here, stopped at ten
# minutes whatever the speed.
TEN_MINUTES = ["experiment=cpu_fast", "trainer.max_steps=19000", "trainer.val_check_interval=1000",
               "+trainer.max_time=00:00:10:00"]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ten-minutes", action="store_true", help="also train cpu_fast for ten minutes")
    parser.add_argument("--runs", type=Path, default=PROJECT_ROOT / "runs" / "cpu_race", help="where the runs go")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "cpu_race.md")
    return parser


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = make_parser().parse_args(argv)

    results = {name: race(name, overrides, args.runs, TARGET) for name, overrides in RECIPES.items()}
    lines = [
        "The recipes ran one after the other on this machine, each from a fresh process; times are wall seconds from the command's start (imports included) to each evaluation.",
        "",
        f"| recipe | first evaluation at or below {TARGET} | best val loss | whole command |",
        "|---|---|---:|---:|",
    ]
    for name, result in results.items():
        lines.append(f"| {name} | {first_at_target(result)} | {result['best'][1]:.4f} (step {result['best'][0]}) | {result['total']:.1f} s |")
    fast, nano = results["cpu_fast"]["reached"], results["nanogpt_cpu"]["reached"]
    if fast and nano:
        lines += ["", f"cpu_fast reached {TARGET} in {fast[2] / nano[2]:.2f} x the time nanoGPT's recipe took."]
    if args.ten_minutes:
        ten = results["cpu_fast_ten_minutes"] = race("cpu_fast_ten_minutes", TEN_MINUTES, args.runs, TARGET)
        lines += ["", f"cpu_fast for ten minutes: best val loss {ten['best'][1]:.4f} at step {ten['best'][0]} "
                  f"({ten['best'][2]:.0f} s), whole command {ten['total']:.0f} s."]
    lines += ["", *curve_lines(results)]
    print(write_page(args.out, "cpu_fast against nanoGPT's CPU recipe", tool_command("cpu_race", argv), lines))


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
