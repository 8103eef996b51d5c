"""The lecture's v7 and nanoGPT's Shakespeare-char config (experiment=nanogpt_gpu) on this
machine's GPU, one after the other: wall time from each command's start to each evaluation,
when each first reaches its target loss, training tokens/s. Writes docs/gpu_race.md.

    python -m shakegpt.tools.gpu_race                   # trainer=gpu: bf16, TF32, compile, fused attention
    python -m shakegpt.tools.gpu_race --trainer ddp trainer.devices=8

Not a test: every figure it writes was measured by the runs it starts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import date
from pathlib import Path

import torch

from shakegpt.bookkeeping.runs import load_run
from shakegpt.common.atomic import write_json
from shakegpt.common.errors import UserError, exit_quietly_on_ctrl_c, report_user_errors
from shakegpt.common.paths import PROJECT_ROOT
from shakegpt.evaluate import score_checkpoint
from shakegpt.tools.pages import tool_command, write_page
from shakegpt.tools.race import curve_lines, first_at_target, race
from shakegpt.tools.records import RECORDS, V7_MODES, lecture_losses

# (overrides, target val loss): v7's is the lecture's final figure, for the video's code and for
# the repository's (its two later fixes); nanoGPT's README reports 1.4697 for its config, in
# about 3 minutes on one A100.
RECIPES = {
    "v7": (["model=v7"], lecture_losses("v7")["val_loss"]),
    "v7_repository": (["model=v7", "model.attention_scale=head_size", "model.init=normal"], lecture_losses("v7")["val_loss"]),
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


def bf16_peak(n: int = 8192, repeats: int = 10) -> float:
    """FLOP/s of an n x n x n bf16 matmul on this GPU: the median of `repeats`, timed with CUDA
    events after three warm-ups. What MFU is measured against."""
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    seconds = []
    for _ in range(repeats):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        a @ b
        end.record()
        end.synchronize()
        seconds.append(begin.elapsed_time(end) / 1e3)
    return 2 * n**3 / statistics.median(seconds)


def write_record(name: str, result: dict, records: Path) -> None:
    """v7's full row as reproduce shows it in docs/results.md, which a CPU cannot rerun."""
    metrics = load_run(result["run_dir"]).metrics
    record = {
        "command": result["command"], "device": result["device"], "date": date.today().isoformat(),
        "final_val_loss": metrics["final_val_loss"], "final_train_loss": metrics["final_train_loss"],
        "best_val_loss": result["best"][1], "best_step": result["best"][0], "steps": metrics["steps"],
        "fit_seconds": metrics["fit_seconds"], "full_val": result["full_val"],
        "curve": {str(step): loss for step, loss, _ in result["curve"]},
    }
    records.mkdir(parents=True, exist_ok=True)
    write_json(records / f"gpu_{name}.json", record)


def full_val_loss(result: dict, device: str) -> float:
    """The best checkpoint's loss over the whole validation split (shakegpt.evaluate)."""
    return score_checkpoint(result["run_dir"] / "checkpoints" / "best.ckpt", "val", device)[0]


def mfu(result: dict, peak: float | None) -> str:
    if peak is None or result["rate"] is None or result["flops_per_token"] is None:
        return "not measured"
    return f"{100 * result['flops_per_token'] * result['rate'] / peak:.1f}%"


def race_table(results: dict[str, dict], peak: float | None) -> list[str]:
    lines = [
        "| recipe | target val loss | first evaluation at or below it | best val loss | final val (train) "
        "| whole-split val loss, best.ckpt | training tokens/s | MFU | whole command |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    return lines + [
        f"| {name} | {r['target']} | {first_at_target(r)} | {r['best'][1]:.4f} (step {r['best'][0]}) "
        f"| {r['final'][0]:.4f} ({r['final'][1]:.4f}) | {r['full_val']:.4f} | {r['tokens_per_s']} | {mfu(r, peak)} "
        f"| {r['total']:.1f} s |"
        for name, r in results.items()
    ]


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = make_parser().parse_args(argv)
    on_gpu = args.trainer not in CPU_TRAINERS
    if on_gpu and not torch.cuda.is_available():
        raise UserError(f"--trainer {args.trainer} needs a CUDA GPU and this machine has none")
    peak = bf16_peak() if on_gpu else None
    results = {}
    for name, (overrides, target) in RECIPES.items():
        results[name] = race(name, [*overrides, f"trainer={args.trainer}", *args.overrides], args.runs, target)
        results[name]["full_val"] = full_val_loss(results[name], "cuda" if on_gpu else "cpu")
        if name in V7_MODES and on_gpu and not args.overrides:  # only v7's row as configured is its row
            write_record(name, results[name], RECORDS)
    v7 = results["v7"]
    peak_line = (f"MFU counts 6 FLOPs per parameter plus attention's per token, against this GPU's measured bf16 "
                 f"peak: {peak / 1e12:.0f} TFLOP/s (8192 x 8192 x 8192 matmul, median of 10)." if peak
                 else "MFU is not measured: no GPU peak on this trainer.")
    lines = [
        f"On {v7['device']}: the recipes ran one after the other, each from a fresh process; times are wall seconds from the command's start (imports and compilation included) to each evaluation.",
        "Val losses during the runs are the lecture's 200-batch estimate; the whole-split column scores every",
        "validation position once (`python -m shakegpt.evaluate`).",
        "",
        *race_table(results, peak),
        "",
        peak_line,
        "",
        f"v7's row took {v7['total']:.0f} s, {'within' if v7['total'] <= ROW_TARGET_SECONDS else 'over'} the "
        f"{ROW_TARGET_SECONDS} s target.",
        "",
        *curve_lines(results),
    ]
    print(write_page(args.out, "v7 and nanoGPT's config on a GPU", tool_command("gpu_race", argv), lines))


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
