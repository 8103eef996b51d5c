"""A sweep's summary.md, summary.csv and curves.png, written from its jobs' run directories."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from omegaconf import OmegaConf

from shakegpt.bookkeeping.report import NOT_MEASURED, last_sample
from shakegpt.bookkeeping.runs import OPTUNA_RESULTS, Run, job_dirs, load_run, timing
from shakegpt.common.atomic import write_text
from shakegpt.common.curves import Curve, plot_curves
from shakegpt.common.errors import UserError

COLUMNS = [
    "job", "overrides", "status", "parameters", "steps", "tokens", "wall_time_s", "final_train_loss",
    "final_val_loss", "best_val_loss", "val_perplexity", "val_bpc", "tokens_per_s",
]


def summary_row(run: Run) -> dict:
    step = run.step
    elapsed, _ = timing(run)
    return {
        "job": run.path.name,
        "overrides": " ".join(run.overrides),
        "status": run.status_line,
        "parameters": run.status.get("parameters"),
        "steps": step,
        "tokens": run.tokens,
        "wall_time_s": round(elapsed, 1) if elapsed is not None else None,
        "final_train_loss": run.last("train/loss"),
        "final_val_loss": run.last("val/loss"),
        "best_val_loss": run.best("val/loss"),
        "val_perplexity": run.last("val/perplexity"),
        "val_bpc": run.last("val/bpc"),
        "tokens_per_s": run.metrics.get("tokens_per_s"),  # the whole fit's, as metrics.json
    }


FORMATS = {"wall_time_s": ",.1f", "tokens_per_s": ",.0f", "parameters": ",", "steps": ",", "tokens": ","}


def cell(column: str, value) -> str:
    if value is None:
        return NOT_MEASURED
    if isinstance(value, (int, float)):
        return format(value, FORMATS.get(column, ".4f"))
    return str(value)


# Overrides that say how a job ran, not what it trained, left out of the tables: a resumed
# sweep's resume=auto, and the pruning callback the Optuna sweeper gives each trial.
HIDDEN_OVERRIDES = ("resume=", "+callbacks.optuna_pruning=")


def varying_overrides(runs: list[Run]) -> tuple[list[str], dict[Path, str]]:
    """(overrides every job shares, each job's own): the table shows only what differs."""
    overrides = {run.path: [o for o in run.overrides if not o.startswith(HIDDEN_OVERRIDES)] for run in runs}
    shared = set.intersection(*(set(own) for own in overrides.values()))
    common = [o for o in overrides[runs[0].path] if o in shared]
    return common, {path: " ".join(o for o in own if o not in shared) for path, own in overrides.items()}


def write_curves(runs: list[Run], labels: dict[Path, str], path: Path) -> bool:
    """Every job's validation loss against step on one figure; False when none was logged."""
    curves = val_curves(runs, labels)
    if curves:
        plot_curves(curves, path, f"{runs[0].path.parent.name}: validation loss per job")
    return bool(curves)


def val_curves(runs: list[Run], labels: dict[Path, str]) -> list[Curve]:
    """Each run's validation loss that was logged, labelled with its name and labels[path]."""
    logged = [run for run in runs if run.scalars.get("val/loss")]
    # Jobs of one seed share their curve until their settings part: dashes and narrowing lines
    # keep each visible.
    return [
        Curve(f"{run.path.name}: {labels[run.path]}", run.curve("val/loss"), linestyle=["-", "--", ":", "-."][i % 4],
              marker="o", linewidth=2.5 - 1.5 * i / max(1, len(logged) - 1))
        for i, run in enumerate(logged)
    ]


def table_lines(rows: list[dict]) -> list[str]:
    """summary_row()s as a Markdown table, the columns of summary.csv."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return lines + ["| " + " | ".join(cell(c, row[c]).replace("|", "\\|") for c in COLUMNS) + " |" for row in rows]


def tally(rows: list[dict]) -> str:
    """'3 finished, 1 failed', with the pruned trials of an Optuna sweep when there are any."""
    pruned = sum(r["status"].startswith("pruned") for r in rows)
    return (f"{sum(r['status'] == 'finished' for r in rows)} finished, " + (f"{pruned} pruned, " if pruned else "")
            + f"{sum(r['status'].startswith('failed') for r in rows)} failed")


def best_trial_lines(sweep: Path) -> list[str]:
    """The Optuna study's best trial, from optimization_results.yaml; nothing for other sweeps."""
    path = sweep / OPTUNA_RESULTS
    if not path.is_file():
        return []
    try:
        results = OmegaConf.to_container(OmegaConf.load(path))
    except Exception:  # YAML's and OmegaConf's errors share no base
        results = None
    if not isinstance(results, dict):
        print(f"warning: the summary leaves out the best trial: {path} is not a record the Optuna sweeper wrote", file=sys.stderr)
        return []
    trials = results.get("trials", {})
    where = results.get("storage") or "in memory"
    lines = [f"## Best trial of Optuna study `{results.get('study_name')}` ({where})", ""]
    if results.get("best_trial") is None:
        best = "No trial has completed yet."
    else:
        params = " ".join(f"{k}={v}" for k, v in results.get("best_params", {}).items())
        best = f"Best value {results['best_value']:.4f} in trial {results['best_trial']} ({job_of(results, sweep)}): `{params}`."
    counted = ", ".join(f"{trials.get(k, 0)} {k}" for k in ("complete", "pruned", "failed"))
    running = f", {trials['running']} running" if trials.get("running") else ""
    lines += [f"{best} The study's trials: {counted}{running} (n_trials={results.get('n_trials')}); "
              "a job's number is its trial's.", ""]
    return lines


def job_of(results: dict, sweep: Path) -> str:
    """Where the best trial ran: a job of this sweep, or a directory of another sweep of the study
    (an earlier run, or another node's)."""
    job_dir = results.get("best_job_dir")
    if not job_dir:
        return "job directory not recorded"
    if Path(job_dir).parent.resolve() == sweep.resolve():
        return f"job {Path(job_dir).name}"
    return f"job directory {job_dir}, of another sweep of the study"


def readable_runs(paths: list[Path]) -> list[Run]:
    """The jobs' runs; a damaged job directory is left out with a warning line (a sweep's summary
    still serves its other jobs)."""
    runs = []
    for path in paths:
        try:
            runs.append(load_run(path))
        except UserError as exc:
            print(f"warning: the summary leaves out job {path.name}: {exc}", file=sys.stderr)
    return runs


def write_sweep_summary(sweep: Path) -> list[dict]:
    """summary.md, summary.csv and curves.png in the sweep directory; returns the rows."""
    sweep = Path(sweep)
    runs = readable_runs(job_dirs(sweep))
    if not runs:
        raise UserError(f"{sweep} holds no job directories")
    common, own = varying_overrides(runs)
    rows = [summary_row(run) | {"overrides": own[run.path]} for run in runs]

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    write_text(sweep / "summary.csv", buffer.getvalue())

    has_curves = write_curves(runs, own, sweep / "curves.png")
    lines = [
        f"# Sweep {sweep}",
        "",
        f"{len(rows)} jobs: {tally(rows)}. Figures are read from each job's logs "
        f"(`python report.py {sweep}` rewrites this file).",
        "",
        f"Every job: `{' '.join(common) or '(no shared overrides)'}`",
        "",
        *best_trial_lines(sweep),
        *table_lines(rows),
    ]
    if has_curves:
        lines += ["", "![validation loss per job](curves.png)"]
    lines += ["", "## Samples (the last one each job logged)", "", "| job | overrides | sample |", "|---|---|---|"]
    for run in runs:
        text = last_sample(run).replace("|", "\\|").replace("\n", "<br>")
        lines.append(f"| {run.path.name} | {own[run.path]} | {text} |")
    write_text(sweep / "summary.md", "\n".join(lines) + "\n")
    return rows
