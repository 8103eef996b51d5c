"""How every tool trains: `python train.py <overrides>` into a run (or sweep) directory, in a fresh
process started from the project root, and the run read back by bookkeeping.runs."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from shakegpt.bookkeeping.runs import Run, holds_run, load_run
from shakegpt.common.errors import UserError
from shakegpt.common.paths import PROJECT_ROOT


@dataclass
class Launched:
    command: str  # as a user types it in the project root, to rerun it
    directory: Path  # the run's (or, for a sweep, the sweep's) directory
    started: float | None  # time.time() at the start; None when an earlier run was read instead
    seconds: float | None  # the whole command's wall time, imports included

    @cached_property
    def run(self) -> Run:
        return load_run(self.directory)


def display_path(path: Path) -> Path:
    """path relative to the project when it lies inside it, so commands in docs can be rerun."""
    path = path.resolve()
    return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path


def train_command(overrides: list[str], directory: Path, sweep: bool = False) -> list[str]:
    """['python', 'train.py', ...]: the overrides, then where the run (or the sweep) goes."""
    where = f"hydra.sweep.dir={display_path(directory)}" if sweep else f"hydra.run.dir={display_path(directory)}"
    return ["python", "train.py", *(["-m"] if sweep else []), *overrides, where]


def run_training(overrides: list[str], directory: Path, sweep: bool = False, reuse: bool = False) -> Launched:
    """Train (or sweep) into directory; its output is hidden, its errors are shown. reuse: read a
    finished run already there instead of training again."""
    command = train_command(overrides, directory, sweep)
    if reuse and not sweep and (directory / "metrics.json").is_file():
        return Launched(shlex.join(command), directory, None, None)
    if holds_run(directory):  # train.py would refuse it, in words meant for its own command line
        raise UserError(f"{directory} holds a {'sweep' if sweep else 'run'} from before, which a tool does not overwrite: "
                        "pass --runs with a new directory, or remove that one")
    started = time.time()
    finished = subprocess.run([sys.executable, *command[1:]], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)
    if finished.returncode != 0:
        raise UserError(f"a run stopped with exit code {finished.returncode} (its error is above): {shlex.join(command)}")
    return Launched(shlex.join(command), directory, started, time.time() - started)


def run_version(version: str, run_dir: Path, overrides: list[str], train: bool = True) -> dict:
    """Train version into run_dir and read its metrics; with train=False, read what an earlier
    run left there (training only where none finished)."""
    launched = run_training([f"model={version}", *overrides], run_dir, reuse=not train)
    metrics = launched.run.metrics
    print(f"{version} {' '.join(overrides)}: val {metrics['final_val_loss']:.4f} in {metrics['fit_seconds']:.0f} s", flush=True)
    return metrics | {"command": launched.command, "run_dir": run_dir}


def run_in_parallel(jobs: int, calls: dict) -> dict:
    """{key: fn(*args)} for calls = {key: (fn, *args)}, `jobs` at a time. A failed run or Ctrl-C
    cancels the runs not started yet (a plain pool would start each of them in turn)."""
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {key: pool.submit(*call) for key, call in calls.items()}
        return {key: future.result() for key, future in futures.items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_per_seed(jobs: int, run_one, names: list[str], seeds: list[int], *args) -> dict[str, list]:
    """{name: [run_one(name, seed, *args) for each seed]}, `jobs` runs at a time."""
    results = run_in_parallel(jobs, {(name, seed): (run_one, name, seed, *args) for name in names for seed in seeds})
    return {name: [results[name, seed] for seed in seeds] for name in names}


def per_seed_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The command line of a tool that trains each of its rows once per seed and writes docs/<name>.md."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1337, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each uses one core)")
    parser.add_argument("--no-train", action="store_true", help="rewrite the docs from the runs already there")
    parser.add_argument("--runs", type=Path, default=PROJECT_ROOT / "runs" / name)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / f"{name}.md")
    parser.add_argument("overrides", nargs="*", help="more train.py overrides for every run (e.g. for a quick check)")
    return parser
