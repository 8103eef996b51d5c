"""The lecture's v7 and nanoGPT's Shakespeare-char config (experiment=nanogpt_gpu) on this
machine's GPU, one after the other: wall time from each command's start to each evaluation,
when each first reaches its target loss, training tokens/s. Writes docs/gpu_race.md.

    python -m shakegpt.tools.gpu_race                   # trainer=gpu: bf16, TF32, compile, fused attention
    python -m shakegpt.tools.gpu_race --trainer ddp trainer.devices=8

Not a test: every figure it writes was measured by the runs it starts.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import torch

from shakegpt.common.atomic import write_text
from shakegpt.common.errors import UserError, report_user_errors
from shakegpt.common.paths import PROJECT_ROOT
from shakegpt.tools.race import curve_lines, first_at_target, race
from shakegpt.tools.reproduce import lecture_losses

# (overrides, target val loss): v7's is the lecture's final figure; nanoGPT's README reports
# 1.4697 for its config, in about 3 minutes on one A100.
RECIPES = {
    "v7": (["model=v7"], lecture_losses("v7")["val_loss"]),
    "nanogpt_gpu": (["experiment=nanogpt_gpu"], 1.4697),
}
ROW_TARGET_SECONDS = 120  # v7's whole row (5,000 steps) on one H100
CPU_TRAINERS = ("cpu", "ddp_cpu")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainer", default="gpu", help="the trainer config the recipes run on (default: gpu)")
    parser.add_argument("--runs", type=Path, default=PROJECT_ROOT / "runs" / "gpu_race", help="where the runs go")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "gpu_race.md")
    parser.add_argument("overrides", nargs="*", help="more train.py overrides for every recipe")
    return parser


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    if args.trainer not in CPU_TRAINERS and not torch.cuda.is_available():
        raise UserError(f"--trainer {args.trainer} needs a CUDA GPU and this machine has none")

    results = {
        name: race(name, [*overrides, f"trainer={args.trainer}", *args.overrides], args.runs, target)
        for name, (overrides, target) in RECIPES.items()
    }
    v7 = results["v7"]
    lines = [
        "# v7 and nanoGPT's config on a GPU",
        "",
        f"Written by `python -m shakegpt.tools.gpu_race {' '.join(argv if argv is not None else sys.argv[1:])}` on "
        f"{date.today().isoformat()} ({v7['device']}): the recipes ran one after the other, each from a fresh",
        "process; times are wall seconds from the command's start (imports and compilation included) to each evaluation.",
        "",
        "| recipe | target val loss | first evaluation at or below it | best val loss | training tokens/s | whole command |",
        "|---|---:|---|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {result['target']} | {first_at_target(result)} | {result['best'][1]:.4f} (step {result['best'][0]}) "
        f"| {result['tokens_per_s']} | {result['total']:.1f} s |"
        for name, result in results.items()
    ]
    verdict = "within" if v7["total"] <= ROW_TARGET_SECONDS else "over"
    lines += ["", f"v7's row took {v7['total']:.0f} s, {verdict} the {ROW_TARGET_SECONDS} s target.", "", *curve_lines(results)]
    text = "\n".join(lines) + "\n"
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
