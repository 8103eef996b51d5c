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
from datetime import date
from pathlib import Path

import torch

from shakegpt.attention import DEFAULT_PROMPT, attention_maps
from shakegpt.bookkeeping.checkpoints import load_model
from shakegpt.bookkeeping.runs import load_run
from shakegpt.common.atomic import save_figure, write_text
from shakegpt.common.errors import report_user_errors
from shakegpt.common.paths import PROJECT_ROOT
from shakegpt.tools.reproduce import run_in_parallel, run_version

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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1337, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each uses one core)")
    parser.add_argument("--no-train", action="store_true", help="rewrite the docs from the runs already there")
    parser.add_argument("--runs", type=Path, default=PROJECT_ROOT / "runs" / "video_fixes")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "video_fixes.md")
    parser.add_argument("overrides", nargs="*", help="more train.py overrides for every run (e.g. for a quick check)")
    return parser


def run_mode(name: str, seed: int, runs: Path, overrides: list[str], train: bool) -> dict:
    """One run: its metrics, its curves ({step: loss}) and its best checkpoint's attention entropy."""
    run_dir = runs / name.replace(" ", "_") / f"seed{seed}"
    metrics = run_version("v7", run_dir, [*SHAPE, *MODES[name][0], "threads=1", f"seed={seed}", *overrides], train)
    scalars = load_run(run_dir).scalars
    metrics["val"] = {step + 1: value for step, value, _ in scalars["val/loss"]}
    metrics["train"] = {step + 1: value for step, value, _ in scalars["train/loss"]}
    metrics["best_step"] = min(metrics["val"], key=metrics["val"].get)
    metrics["entropy"] = attention_entropy(load_model(run_dir / "checkpoints" / "best.ckpt"))
    return metrics


def attention_entropy(model) -> float:
    """Mean entropy, in bits, of the attention rows over the default prompt's last 64 characters,
    every layer and head: lower is sharper (a row on one key has 0; uniform over n keys, log2 n)."""
    _, maps = attention_maps(model, DEFAULT_PROMPT)
    rows = torch.cat([layer.flatten(0, 1) for layer in maps])  # (layers * heads * T, T)
    return float(-(rows * rows.clamp_min(1e-12).log2()).sum(-1).mean())


def run_all(seeds: list[int], args) -> dict[str, list[dict]]:
    results = run_in_parallel(args.jobs, {(n, s): (run_mode, n, s, args.runs, args.overrides, not args.no_train) for n in MODES for s in seeds})
    return {n: [results[n, s] for s in seeds] for n in MODES}


def mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def row_line(name: str, runs: list[dict]) -> str:
    best = [m["val"][m["best_step"]] for m in runs]
    final_val, final_train = [m["final_val_loss"] for m in runs], [m["final_train_loss"] for m in runs]
    return (
        f"| {name} | {MODES[name][1]} | `{' '.join(MODES[name][0])}` | {mean_sd(best)} | {', '.join(str(m['best_step']) for m in runs)} "
        f"| {mean_sd(final_val)} | {statistics.mean(final_train):.4f} | {statistics.mean(final_val) - statistics.mean(final_train):+.4f} "
        f"| {statistics.mean(m['entropy'] for m in runs):.2f} | {statistics.mean(m['fit_seconds'] for m in runs):.0f} s |"
    )


def page(results: dict[str, list[dict]], seeds: list[int], argv: list[str], jobs: int) -> str:
    lines = [
        "# The lecture's two later fixes, measured",
        "",
        f"Written by `{' '.join(['python -m shakegpt.tools.video_fixes', *argv])}` on {date.today().isoformat()}. v7's",
        f"shape scaled down, in the four combinations of the two fixes, once per seed ({', '.join(map(str, seeds))}),",
        f"{jobs} run(s) at a time, one thread each, every run with these overrides:",
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
        "",
        "Commands (one per seed)",
        "",
        *(f"- {name}: `{m['command']}`" for name, runs in results.items() for m in runs),
    ]
    return "\n".join(lines) + "\n"


def mean_curve(curves: list[dict[int, float]]) -> tuple[list[int], list[float]]:
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    return steps, [statistics.mean(c[s] for c in curves) for s in steps]


def curves_figure(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6))
    for name, runs in results.items():
        (line,) = ax.plot(*mean_curve([m["val"] for m in runs]), marker=".", label=f"{name}: validation")
        ax.plot(*mean_curve([m["train"] for m in runs]), linestyle="--", color=line.get_color(), label=f"{name}: training")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (20-batch estimate, mean of seeds)")
    ax.set_ylim(top=min(2.6, ax.get_ylim()[1]))
    ax.set_title("v7 scaled down: the video's code and the repository's two later fixes", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = make_parser().parse_args(argv)
    results = run_all(args.seeds, args)
    text = page(results, args.seeds, argv, args.jobs)
    write_text(args.out, text)
    curves_figure(results, args.out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
