"""The lecture's two later fixes, measured on a laptop: a v7-shaped model scaled down to train in
about six minutes a run on one core, in the four combinations of the video's code and the repository's
two fixes (model.attention_scale=head_size, model.init=normal), 3 seeds each. Writes
docs/video_fixes.md (best and final losses, the step of the best, how sharp the attention is)
and docs/video_fixes.png (the validation and training curves, mean of seeds).

    python -m shakegpt.tools.video_fixes                 # 4 combinations x 3 seeds, 2 runs at a time
    python -m shakegpt.tools.video_fixes --no-train      # rewrite the docs from the runs already there

Not a test: every figure it writes was measured by the runs it starts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from shakegpt.attention import DEFAULT_PROMPT, attention_maps
from shakegpt.bookkeeping.checkpoints import load_model
from shakegpt.bookkeeping.runs import load_run
from shakegpt.common.curves import mean_of_seeds, plot_curves
from shakegpt.common.errors import exit_quietly_on_ctrl_c, report_user_errors
from shakegpt.tools.pages import commands_section, mean_sd, tool_command, write_page
from shakegpt.tools.runner import per_seed_parser, run_per_seed, run_version

# v7's shape scaled down (6 layers of 384 -> 4 of 96, 4 heads of 24, windows of 256 -> 64),
# its dropout and constant rate kept (the rate raised for the shorter run): about six minutes
# a run on one core here (350 s measured). n_embd / head_size is 4, so the video's scores are 2x softer.
SHAPE = [
    "model.n_embd=96", "model.n_head=4", "model.n_layer=4", "model.dropout=0.2",
    "data.block_size=64", "data.batch_size=32", "data.eval_iters=20",
    "trainer.max_steps=1500", "trainer.val_check_interval=150", "optimizer.lr=2e-3",
]
# name: (its overrides, what it is)
MODES = {
    "video": (["model.attention_scale=n_embd", "model.init=pytorch"], "the video's code"),
    "scale fix": (["model.attention_scale=head_size", "model.init=pytorch"], "scores / sqrt(head_size) (2023-01-27)"),
    "init fix": (["model.attention_scale=n_embd", "model.init=normal"], "weights normal(0, 0.02) (2023-02-06)"),
    "both fixes": (["model.attention_scale=head_size", "model.init=normal"], "the repository today"),
}


def make_parser() -> argparse.ArgumentParser:
    parser = per_seed_parser(__doc__, "video_fixes")
    return parser


def run_mode(name: str, seed: int, runs: Path, overrides: list[str], train: bool) -> dict:
    """One run: its metrics, its curves ({step: loss}) and its best checkpoint's attention entropy."""
    run_dir = runs / name.replace(" ", "_") / f"seed{seed}"
    metrics = run_version("v7", run_dir, [*SHAPE, *MODES[name][0], "threads=1", f"seed={seed}", *overrides], train)
    run = load_run(run_dir)
    metrics["val"], metrics["train"] = run.curve("val/loss"), run.curve("train/loss")
    metrics["best_step"] = min(metrics["val"], key=metrics["val"].get)
    metrics["entropy"] = attention_entropy(load_model(run_dir / "checkpoints" / "best.ckpt"))
    return metrics


def attention_entropy(model) -> float:
    """Mean entropy, in bits, of the attention rows over the default prompt's last 64 characters,
    every layer and head: lower is sharper (a row on one key has 0; uniform over n keys, log2 n)."""
    _, maps = attention_maps(model, DEFAULT_PROMPT)
    rows = torch.cat([layer.flatten(0, 1) for layer in maps])  # (layers * heads * T, T)
    return float(-(rows * rows.clamp_min(1e-12).log2()).sum(-1).mean())


def row_line(name: str, runs: list[dict]) -> str:
    best = [m["val"][m["best_step"]] for m in runs]
    final_val, final_train = [m["final_val_loss"] for m in runs], [m["final_train_loss"] for m in runs]
    return (
        f"| {name} | {MODES[name][1]} | `{' '.join(MODES[name][0])}` | {mean_sd(best)} | {', '.join(str(m['best_step']) for m in runs)} "
        f"| {mean_sd(final_val)} | {statistics.mean(final_train):.4f} | {statistics.mean(final_val) - statistics.mean(final_train):+.4f} "
        f"| {statistics.mean(m['entropy'] for m in runs):.2f} | {statistics.mean(m['fit_seconds'] for m in runs):.0f} s |"
    )


def page(results: dict[str, list[dict]], seeds: list[int], jobs: int) -> list[str]:
    return [
        "v7's shape scaled down, in the four combinations of the two fixes, once per seed",
        f"({', '.join(map(str, seeds))}), {jobs} run(s) at a time, one thread each, every run with these overrides:",
        "",
        f"    python train.py model=v7 {' '.join(SHAPE)}",
        "",
        "Losses are the runs' own estimate (20 batches per split at each evaluation). Best: the lowest",
        "validation loss of a run and the step it came at; final: after the last step; gap: final val minus",
        "final train, how far the model has overfit. Attention entropy: the best checkpoint's attention",
        "rows over the last 64 characters of the default prompt, in bits, mean over layers, heads and rows",
        "(lower is sharper; uniform over 64 keys is 6 bits).",
        "",
        "![validation and training curves](video_fixes.png)",
        "",
        "| combination | what it is | overrides | best val (mean ± sd) | step of best (per seed) | final val (mean ± sd) "
        "| final train | gap | attention entropy | time per run |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|",
        *(row_line(name, runs) for name, runs in results.items()),
        *commands_section(results),
    ]


def curves_figure(results: dict[str, list[dict]], path: Path) -> None:
    curves = []
    for name, runs in results.items():
        curves.append(mean_of_seeds(f"{name}: validation", [m["val"] for m in runs]))
        curves.append(mean_of_seeds(f"{name}: training", [m["train"] for m in runs], linestyle="--", marker=None,
                                    same_colour_as_previous=True))
    plot_curves(curves, path, "v7 scaled down: the video's code and the repository's two later fixes",
                ylabel="loss (20-batch estimate, mean of seeds)", ylim=(None, 2.6), legend_columns=2)


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = make_parser().parse_args(argv)
    results = run_per_seed(args.jobs, run_mode, list(MODES), args.seeds, args.runs, args.overrides, not args.no_train)
    title = "The lecture's two later fixes, measured"
    text = write_page(args.out, title, tool_command("video_fixes", argv), page(results, args.seeds, args.jobs))
    curves_figure(results, args.out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
