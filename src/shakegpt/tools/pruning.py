"""How much sooner a 12-trial Optuna search ends when it prunes: the same search (same space,
same sampler seed) run by train.py with the default median pruner and with
hydra.sweeper.pruner=null, back to back on this machine. Writes docs/pruning.md.

    python -m shakegpt.tools.pruning                # one search of each
    python -m shakegpt.tools.pruning --repeats 2    # two of each, alternating which goes first

Not a test: every figure it writes was measured by the searches it starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from statistics import mean

from omegaconf import OmegaConf

from shakegpt.bookkeeping.runs import OPTUNA_RESULTS, job_dirs
from shakegpt.bookkeeping.status import read_status
from shakegpt.common.errors import exit_quietly_on_ctrl_c, report_user_errors
from shakegpt.common.paths import PROJECT_ROOT
from shakegpt.tools.pages import tool_command, write_page
from shakegpt.tools.runner import run_training

# v6 trained 1,500 steps with an evaluation every 100: about 12 s a trial here. The space: the
# learning rate over two decades and the depth; the sampler's first 10 trials are random draws,
# the same in both searches, so the two mostly differ by what the pruner stops.
SEARCH = [
    "model=v6", "hparams_search=lr", "model.n_layer=choice(2,3,4)",
    "trainer.max_steps=1500", "trainer.val_check_interval=100", "data.eval_iters=20", "sample_tokens=50",
]
ARMS = {"pruned": [], "unpruned": ["hydra.sweeper.pruner=null"]}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12, help="trials per search")
    parser.add_argument("--seed", type=int, default=0, help="the TPE sampler's seed, the same for both")
    parser.add_argument("--repeats", type=int, default=1, help="searches of each kind, alternating the order")
    parser.add_argument("--runs", type=Path, default=PROJECT_ROOT / "runs" / "pruning", help="where the sweeps go")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "pruning.md")
    return parser


def run_search(arm: str, args, repeat: int) -> dict:
    """One search from a fresh process: its wall seconds, the study's tally and best trial, and
    the training steps its jobs ran."""
    sweeper = [f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.sampler.seed={args.seed}", *ARMS[arm]]
    load = os.getloadavg()[0]
    search = run_training([*SEARCH, *sweeper], args.runs / f"{arm}-{repeat}", sweep=True)
    results = OmegaConf.to_container(OmegaConf.load(search.directory / OPTUNA_RESULTS))
    steps = sum(read_status(job).get("steps") or 0 for job in job_dirs(search.directory))
    result = {"arm": arm, "repeat": repeat, "command": search.command, "seconds": search.seconds,
              "load": load, "steps": steps, **results}
    print(f"{arm} (repeat {repeat}): {search.seconds:.1f} s, {results['trials']['pruned']} of {args.trials} trials pruned, "
          f"{steps:,} steps trained, best {results['best_value']:.4f} (trial {results['best_trial']})", flush=True)
    return result


def report_lines(results: list[dict], args) -> list[str]:
    per_arm = {arm: [r for r in results if r["arm"] == arm] for arm in ARMS}
    lines = [
        "Each search ran from a fresh process, the two kinds back to back"
        + (", alternating which went first," if args.repeats > 1 else ""),
        f"on this {os.cpu_count()}-core CPU, which other work shared: wall times are noisy (the load average when",
        "each started is in the table). Same search space and sampler seed in both; the pruner is the default",
        "of conf/hydra/sweeper/optuna.yaml (median of the earlier trials at the same step, 5 startup trials, no warmup).",
        "",
        *summary(per_arm, args.trials),
        "",
        "| search | repeat | wall time | load avg at start | complete / pruned / failed | steps trained | best val loss (trial) |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for r in results:
        t = r["trials"]
        lines.append(f"| {r['arm']} | {r['repeat']} | {r['seconds']:.1f} s | {r['load']:.1f} | "
                     f"{t['complete']} / {t['pruned']} / {t['failed']} | {r['steps']:,} | {r['best_value']:.4f} ({r['best_trial']}) |")
    lines += ["", "Commands:", ""] + [f"    {r['command']}" for r in results if r["repeat"] == 0]
    lines += ["", "Best parameters:", ""] + [
        f"- {r['arm']} (repeat {r['repeat']}): " + " ".join(f"`{k}={v}`" for k, v in r["best_params"].items())
        for r in results
    ]
    return lines


def each(texts) -> str:
    """One figure per search, or the one they all share: '5', or '5, 4'."""
    texts = list(texts)
    return texts[0] if len(set(texts)) == 1 else ", ".join(texts)


def summary(per_arm: dict[str, list[dict]], trials: int) -> list[str]:
    """The figures in three sentences: time, training steps, what each search found."""
    seconds = {arm: mean(r["seconds"] for r in runs) for arm, runs in per_arm.items()}
    steps = {arm: mean(r["steps"] for r in runs) for arm, runs in per_arm.items()}
    best = {arm: each(f"{r['best_value']:.4f} (trial {r['best_trial']})" for r in runs) for arm, runs in per_arm.items()}
    pruned = each(str(r["trials"]["pruned"]) for r in per_arm["pruned"])
    n = len(per_arm["pruned"])
    means = f" (means of {n} each)" if n > 1 else ""
    ratio, saved = seconds["unpruned"] / seconds["pruned"], 1 - seconds["pruned"] / seconds["unpruned"]
    at_most = f"the first 5 always run to the end, so at most {trials - 5} can be"
    return [
        f"With pruning the search took **{seconds['pruned']:.0f} s** against **{seconds['unpruned']:.0f} s** "
        f"without{means}: " + (f"it ended **{ratio:.2f}x** sooner ({100 * saved:.0f}% less time)." if ratio >= 1 else
                               f"it ended **{1 / ratio:.2f}x** later ({-100 * saved:.0f}% more time; the table's load "
                               "column shows what else this machine ran)."),
        f"Its jobs trained {steps['pruned']:,.0f} steps against {steps['unpruned']:,.0f}: {pruned} of {trials} "
        f"trials pruned{' in each search' if n > 1 else ''} ({at_most}).",
        f"Best validation loss found with pruning: {best['pruned']}; without: {best['unpruned']}.",
    ]


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = make_parser().parse_args(argv)
    results = []
    for repeat in range(args.repeats):
        order = list(ARMS) if repeat % 2 == 0 else list(reversed(ARMS))
        results += [run_search(arm, args, repeat) for arm in order]
    title = f"What pruning saves: a {args.trials}-trial Optuna search with and without it"
    print(write_page(args.out, title, tool_command("pruning", argv), report_lines(results, args)))


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
