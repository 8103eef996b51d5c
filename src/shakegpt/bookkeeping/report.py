"""Honest run reports: every figure is read from a run's own files; what was not logged says so.

A run directory holds .hydra/ (config, overrides), status.json, TensorBoard event files and, once
finished, metrics.json. A sweep directory holds one run directory per job.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from shakegpt.bookkeeping.resume import is_override_list, load_plain
from shakegpt.bookkeeping.status import read_json_object, read_status
from shakegpt.common.atomic import save_figure, write_text
from shakegpt.common.config import flatten
from shakegpt.common.errors import UserError

NOT_MEASURED = "not measured"


@dataclass
class Run:
    path: Path
    config: dict
    overrides: list[str]
    status: dict
    scalars: dict[str, list[tuple[int, float, float]]]  # tag -> [(step, value, wall time)]
    samples: list[tuple[int, str]] = field(default_factory=list)  # [(step, text)]
    metrics: dict = field(default_factory=dict)  # metrics.json, once the run finished

    @property
    def tokens(self) -> int | None:
        """Tokens trained, all processes together: as metrics.json counts them, else the
        logged step times the tokens per step the run recorded when it started."""
        per_step = self.status.get("tokens_per_step")
        return self.metrics.get("tokens") or (self.step * per_step if self.step and per_step else None)

    @property
    def status_line(self) -> str:
        """The state, with the reason of a failure: 'failed: <one line>'."""
        if self.state == "interrupted":
            where = f"at step {self.status['steps']}" if self.status.get("steps") is not None else "before training started"
            return f"interrupted {where} by {self.status.get('signal', 'a signal')}; continue with resume=auto"
        return self.state + (f": {self.status['reason']}" if self.status.get("reason") else "")

    @property
    def state(self) -> str:
        state = self.status.get("state", "unknown")
        if state == "running" and not process_alive(self.status.get("pid")):
            return "stopped (its process is gone)"
        return state

    def last(self, tag: str) -> float | None:
        return self.scalars[tag][-1][1] if self.scalars.get(tag) else None

    def best(self, tag: str) -> float | None:
        return min(v for _, v, _ in self.scalars[tag]) if self.scalars.get(tag) else None

    @property
    def step(self) -> int | None:
        steps = [points[-1][0] + 1 for tag, points in self.scalars.items() if points and tag != "epoch"]
        return self.status.get("steps") or (max(steps) if steps else None)

    @property
    def max_steps(self) -> int | None:
        return self.config.get("trainer", {}).get("max_steps")


MAX_PID = 1 << 22  # Linux's largest pid_max; a larger number recorded in a file names no process


def process_alive(pid) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= MAX_PID:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def read_events(run_dir: Path) -> tuple[dict, list]:
    """Scalars and text samples from a run's TensorBoard event files (complete records only,
    so a file still being written reads fine)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # it logs every file it opens
    events_dir = run_dir
    if not any(run_dir.glob("events.out.tfevents.*")):
        events_dir = run_dir / "tensorboard"  # where runs of earlier versions wrote them
    if not events_dir.is_dir():
        return {}, []
    events = EventAccumulator(str(events_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    scalars = {tag: [(e.step, e.value, e.wall_time) for e in events.Scalars(tag)] for tag in tags["scalars"]}
    samples = []
    if "sample/text_summary" in tags["tensors"]:
        for event in events.Tensors("sample/text_summary"):
            text = event.tensor_proto.string_val[0].decode()
            samples.append((event.step, "\n".join(line[4:] for line in text.split("\n"))))
    return scalars, samples


def load_run(path: str | Path) -> Run:
    path = Path(path)
    config_file = path / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise UserError(f"{path} is not a shakegpt run directory (no .hydra/config.yaml)")
    config = read_yaml(config_file, dict)
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = read_yaml(overrides_file, list) if overrides_file.is_file() else []
    scalars, samples = read_events(path)
    return Run(path, config, overrides, read_status(path), scalars, samples, read_metrics(path))


def read_yaml(path: Path, kind: type):
    """A run's saved config (dict) or overrides (list of strings), or one line saying it is not."""
    try:
        found = load_plain(path)
    except Exception:  # YAML's and OmegaConf's errors share no base
        found = None
    if not isinstance(found, kind) or kind is list and not is_override_list(found):
        raise UserError(f"{path} is not a {'config' if kind is dict else 'list of overrides'} Hydra wrote; the run directory is damaged")
    return found


def read_metrics(path: Path) -> dict:
    return read_json_object(path / "metrics.json")  # {}: not finished, or a file cut short


def job_dirs(sweep: Path) -> list[Path]:
    jobs = [p for p in sweep.iterdir() if (p / ".hydra" / "config.yaml").is_file()]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def flops_per_token(params: int | None, config: dict) -> float | None:
    """Training FLOPs per token, estimated as nanoGPT does: 6 per parameter plus attention's
    12 * layers * width * context. None without a parameter count."""
    if params is None:
        return None
    model = config.get("model", {})
    width = model.get("n_embd", 0)
    layers = model.get("n_layer", 1 if width else 0)
    return 6 * params + 12 * layers * width * config.get("data", {}).get("block_size", 0)


def fmt(value, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_MEASURED
    return format(value, spec)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return NOT_MEASURED
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def timing(run: Run) -> tuple[float | None, float | None]:
    """(elapsed seconds, ETA seconds): elapsed from status.json; ETA only while running, from
    the logged rate of steps."""
    started, updated = run.status.get("started"), run.status.get("updated")
    if started is None:
        return None, None
    earlier = run.status.get("earlier_seconds", 0)  # processes before a resume
    if run.state == "running":
        elapsed = earlier + time.time() - started
        points = run.scalars.get("train/step_loss", [])
        if len(points) >= 2 and run.max_steps:
            rate = (points[-1][0] - points[0][0]) / max(1e-9, points[-1][2] - points[0][2])
            return elapsed, (run.max_steps - points[-1][0] - 1) / rate if rate > 0 else None
        return elapsed, None
    return (earlier + updated - started if updated else None), None


def figures(run: Run) -> dict[str, str]:
    """The run's figures as printable strings, in the order a report shows them."""
    step, max_steps = run.step, run.max_steps
    elapsed, eta = timing(run)
    tokens_per_s = run.last("perf/tokens_per_s")
    flops = flops_per_token(run.status.get("parameters"), run.config)
    progress = f"{step:,} / {max_steps:,} ({100 * step / max_steps:.0f}%)" if step and max_steps else NOT_MEASURED
    rows = {
        "status": run.status_line,
        "step": progress,
        "elapsed": fmt_seconds(elapsed),
    }
    if run.state == "running":
        rows["ETA"] = fmt_seconds(eta)
    val_last, train_last = run.last("val/loss"), run.last("train/loss")
    rows |= {
        "train loss (last / best)": f"{fmt(train_last)} / {fmt(run.best('train/loss'))}",
        "val loss (last / best)": f"{fmt(val_last)} / {fmt(run.best('val/loss'))}",
        "val perplexity (last / best)": f"{fmt(run.last('val/perplexity'), '.2f')} / {fmt(run.best('val/perplexity'), '.2f')}",
        "val bpc (last / best)": f"{fmt(run.last('val/bpc'))} / {fmt(run.best('val/bpc'))}",
        "tokens/s (last interval)": fmt(tokens_per_s, ",.0f"),
        "parameters": fmt(run.status.get("parameters"), ","),
        "device": run.metrics.get("device", NOT_MEASURED),
        "FLOPs per token (estimated)": fmt(flops, ",.0f"),
        "achieved FLOP/s (estimated)": fmt(flops * tokens_per_s, ".3g") if flops and tokens_per_s else NOT_MEASURED,
    }
    return rows


def last_sample(run: Run) -> str:
    return run.samples[-1][1] if run.samples else NOT_MEASURED


def run_report(run: Run) -> str:
    lines = [f"run: {run.path}", f"overrides: {' '.join(run.overrides) or '(none)'}"]
    lines += [f"{name}: {value}" for name, value in figures(run).items()]
    step = f" (step {run.samples[-1][0]})" if run.samples else ""
    lines += ["", f"last sample{step}:", last_sample(run)]
    return "\n".join(lines)


def compare_report(a: Run, b: Run) -> str:
    flat_a, flat_b = flatten(a.config), flatten(b.config)
    differing = sorted(k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k) != flat_b.get(k))
    lines = [f"A: {a.path}", f"B: {b.path}", "", "config differences:"]
    lines += [f"  {k}: {flat_a.get(k, '(absent)')} -> {flat_b.get(k, '(absent)')}" for k in differing] or ["  (none)"]
    fa, fb = figures(a), figures(b)
    width = max(len(k) for k in fa)
    lines += ["", f"{'':{width}}  {'A':<28}  B"]
    lines += [f"{k:{width}}  {fa[k]:<28}  {fb.get(k, NOT_MEASURED)}" for k in fa]
    lines += ["", "sample A:", last_sample(a), "", "sample B:", last_sample(b)]
    return "\n".join(lines)


# Sweep summary ---------------------------------------------------------------------------------

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(run, run.scalars["val/loss"]) for run in runs if run.scalars.get("val/loss")]
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(9, 5.5))
    # Jobs of one seed share their curve until their settings part: dashes keep each visible.
    styles = ["-", "--", ":", "-."]
    for i, (run, points) in enumerate(curves):
        label = f"{run.path.name}: {labels[run.path]}"
        ax.plot([s + 1 for s, _, _ in points], [v for _, v, _ in points], styles[i % 4], marker="o",
                markersize=3, linewidth=2.5 - 1.5 * i / max(1, len(curves) - 1), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_title(f"{runs[0].path.parent.name}: validation loss per job")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return True


def tally(rows: list[dict]) -> str:
    """'3 finished, 1 failed', with the pruned trials of an Optuna sweep when there are any."""
    pruned = sum(r["status"].startswith("pruned") for r in rows)
    return (f"{sum(r['status'] == 'finished' for r in rows)} finished, " + (f"{pruned} pruned, " if pruned else "")
            + f"{sum(r['status'].startswith('failed') for r in rows)} failed")


OPTUNA_RESULTS = "optimization_results.yaml"  # what the Optuna sweeper writes into its sweep directory


def best_trial_lines(sweep: Path) -> list[str]:
    """The Optuna study's best trial, from optimization_results.yaml; nothing for other sweeps."""
    path = sweep / OPTUNA_RESULTS
    if not path.is_file():
        return []
    results = OmegaConf.to_container(OmegaConf.load(path))
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
    """Where the best trial ran: a job of this sweep, or a directory of an earlier run of the study."""
    job_dir = results.get("best_job_dir")
    if not job_dir:
        return "job directory not recorded"
    if Path(job_dir).parent.resolve() == sweep.resolve():
        return f"job {Path(job_dir).name}"
    return f"job directory {job_dir}, an earlier run of the study"


def write_sweep_summary(sweep: Path) -> list[dict]:
    """summary.md, summary.csv and curves.png in the sweep directory; returns the rows."""
    sweep = Path(sweep)
    runs = [load_run(p) for p in job_dirs(sweep)]
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
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cell(c, row[c]).replace("|", "\\|") for c in COLUMNS) + " |" for row in rows]
    if has_curves:
        lines += ["", "![validation loss per job](curves.png)"]
    lines += ["", "## Samples (the last one each job logged)", "", "| job | overrides | sample |", "|---|---|---|"]
    for run in runs:
        text = last_sample(run).replace("|", "\\|").replace("\n", "<br>")
        lines.append(f"| {run.path.name} | {own[run.path]} | {text} |")
    write_text(sweep / "summary.md", "\n".join(lines) + "\n")
    return rows


def is_sweep(path: Path) -> bool:
    return not (path / ".hydra").is_dir() and any((p / ".hydra").is_dir() for p in path.iterdir() if p.is_dir())
