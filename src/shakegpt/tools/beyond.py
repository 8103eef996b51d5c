"""After the lecture: v7 and each later version (v8..v16, one change each) trained at one shared
CPU-sized shape and budget, 3 seeds each, scored on the whole validation split; then
settings on v12 and v16: the optimizer (Muon, its momentum warm-up and weight decay), dropout
and weight averaging. Writes docs/beyond.md (the table)
and docs/beyond.png (the validation curves).

    python -m shakegpt.tools.beyond                     # every row, 3 seeds, 2 runs at a time
    python -m shakegpt.tools.beyond --rows v7 v8 --seeds 1337
    python -m shakegpt.tools.beyond --no-train          # rewrite the docs from the runs already there

Not a test: every figure it writes was measured by the runs it starts.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

from shakegpt.bookkeeping.runs import load_run
from shakegpt.common.curves import mean_of_seeds, plot_curves
from shakegpt.common.errors import exit_quietly_on_ctrl_c, report_user_errors
from shakegpt.evaluate import score_checkpoint
from shakegpt.tools.pages import commands_section, mean_sd, tool_command, write_page
from shakegpt.tools.runner import per_seed_parser, run_per_seed, run_version

# One shape and budget for every row: small enough that a run takes about two minutes on one
# core here, large enough that the architecture matters (4 layers, 64-character windows).
SHAPE = [
    "model.n_embd=96", "model.n_head=4", "model.n_layer=4", "model.dropout=0.0",
    "data.block_size=64", "data.batch_size=32", "data.eval_iters=20",
    "trainer.max_steps=1200", "trainer.val_check_interval=200",
    "optimizer.lr=3e-3", "optimizer.weight_decay=0.1", "optimizer.betas=[0.9,0.99]",
    "scheduler=cosine", "scheduler.warmup_steps=50", "scheduler.min_lr_ratio=0.1",
]
ADAMW = ["optimizer=adamw"]  # weight decay on 2-D weights only, as nanoGPT
MUON = ["optimizer=muon"]
# v7 as the lecture's repository has it, the settings v8..v16 keep (their configs say so)
REPOSITORY = ["model.attention_scale=head_size", "model.init=normal"]
# name: (version, its overrides, the one change, the row it is compared with)
ROWS = {
    "v7": ("v7", [*ADAMW, *REPOSITORY], "the lecture's last version as its repository has it (dropout off at this size)", None),
    "v8": ("v8", ADAMW, "rotary position embeddings instead of the learned table", "v7"),
    "v9": ("v9", ADAMW, "SwiGLU feed-forward instead of ReLU", "v8"),
    "v10": ("v10", ADAMW, "QK-norm: RMSNorm on each head's q and k", "v9"),
    "v11": ("v11", ADAMW, "RMSNorm instead of LayerNorm", "v10"),
    "v12": ("v12", ADAMW, "zero-initialised output projections", "v11"),
    # The modded-nanogpt speedrun's changes, in its order (v13.py .. v16.py say where each comes from)
    "v13": ("v13", ADAMW, "ReLU^2 feed-forward instead of SwiGLU", "v12"),
    "v14": ("v14", ADAMW, "logits soft-capped: 15 tanh(logits / 15)", "v13"),
    "v15": ("v15", ADAMW, "value residual: the first layer's values mixed into the later layers'", "v14"),
    "v16": ("v16", ADAMW, "U-net skips: the first half's block outputs into the second half's inputs", "v15"),
    "v16+dropout": ("v16", [*ADAMW, "model.dropout=0.1"], "model.dropout=0.1 against overfitting the 1 MB corpus", "v16"),
    "v12+muon": ("v12", MUON, "optimizer=muon: Muon on the hidden matrices, AdamW on the rest", "v12"),
    "v16+muon": ("v16", MUON, "optimizer=muon on v16", "v16"),
    "v16+muon-warmup": ("v16", [*MUON, "optimizer.momentum_warmup_steps=300"],
                        "Muon's momentum rising 0.85 -> 0.95 over the first 300 steps", "v16+muon"),
    "v16+muon-wd": ("v16", [*MUON, "optimizer.muon_weight_decay=0.05"], "weight decay 0.05 on Muon's matrices", "v16+muon"),
    "v12+ema": ("v12", [*ADAMW, "callbacks=ema"], "callbacks=ema: the checkpoint holds an average of the weights", "v12"),
}


def make_parser() -> argparse.ArgumentParser:
    parser = per_seed_parser(__doc__, "beyond")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    return parser


def run_row(name: str, seed: int, runs: Path, overrides: list[str], train: bool) -> dict:
    """One run of a row, with its best checkpoint's loss over the whole validation split."""
    version, extra, _, _ = ROWS[name]
    run_dir = runs / name / f"seed{seed}"
    metrics = run_version(version, run_dir, [*SHAPE, *extra, "threads=1", f"seed={seed}", *overrides], train)
    metrics["full_val"], _, _ = score_checkpoint(run_dir / "checkpoints" / "best.ckpt", "val", "cpu")
    return metrics


def row_line(name: str, runs: list[dict], results: dict[str, list[dict]]) -> str:
    _, _, change, previous = ROWS[name]
    losses = [m["full_val"] for m in runs]
    mean = statistics.mean(losses)
    if previous in results:
        delta = mean - statistics.mean(m["full_val"] for m in results[previous])
        delta_text = f"{delta:+.4f} vs {previous}"
    else:
        delta_text = "n/a"
    return (
        f"| {name} | {change} | {runs[0]['parameters']:,} | {mean_sd(losses)} | {mean / math.log(2):.3f} "
        f"| {', '.join(f'{loss:.4f}' for loss in losses)} | {delta_text} "
        f"| {statistics.mean(m['fit_seconds'] for m in runs):.0f} s |"
    )


def page(results: dict[str, list[dict]], seeds: list[int], jobs: int) -> list[str]:
    return [
        f"Every row trains at one shared shape and budget, once per seed ({', '.join(map(str, seeds))}),",
        f"{jobs} run(s) at a time, one thread each:",
        "",
        f"    {' '.join(SHAPE)}",
        "",
        "Loss is the best checkpoint's mean cross-entropy over the whole validation split, every position",
        "scored once (`python -m shakegpt.evaluate`), not the 20-batch estimate the runs log. Each version",
        "is the one above it plus one change: v8..v12 in the order of the gains they first measured here,",
        "largest first, v13..v16 in the modded-nanogpt speedrun's order; the rows named v12+..., v16+...",
        "change only a setting, the optimizer or the callbacks.",
        "",
        "![validation curves](beyond.png)",
        "",
        "| row | the one change | parameters | whole-split val loss (mean ± sd) | bits/char | per seed "
        "| delta (negative helps) | training time per run |",
        "|---|---|---:|---:|---:|---|---:|---:|",
        *(row_line(name, runs, results) for name, runs in results.items()),
        *commands_section(results),
    ]


def curves_figure(results: dict[str, list[dict]], path: Path) -> None:
    curves = [mean_of_seeds(f"{name} ({statistics.mean(m['full_val'] for m in runs):.4f})",
                            [load_run(m["run_dir"]).curve("val/loss") for m in runs]) for name, runs in results.items()]
    plot_curves(curves, path, "After the lecture, at one shared shape: validation loss (legend: whole-split loss)",
                ylabel="validation loss (the runs' 20-batch estimate, mean of seeds)")


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = make_parser().parse_args(argv)
    results = run_per_seed(args.jobs, run_row, args.rows, args.seeds, args.runs, args.overrides, not args.no_train)
    body = page(results, args.seeds, args.jobs)
    text = write_page(args.out, "After the lecture: each change measured", tool_command("beyond", argv), body)
    curves_figure(results, args.out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
