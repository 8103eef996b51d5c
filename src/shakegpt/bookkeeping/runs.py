"""One reader of runs for every report: a run directory's files as a Run, read as data.

A run directory holds .hydra/ (config, overrides), status.json, metrics.jsonl (the run's own
record of every scalar and text sample it logged, whatever its loggers), the loggers' files
(TensorBoard's event files by default) and, once finished, metrics.json. A sweep directory holds one run directory per job (and, from the Optuna
sweeper, optimization_results.yaml).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from shakegpt.bookkeeping.status import read_json_object, read_status
from shakegpt.common.errors import UserError

OPTUNA_RESULTS = "optimization_results.yaml"  # what the Optuna sweeper writes into its sweep directory
RECORD = "metrics.jsonl"  # what a run logged, one JSON object a line (training.loggers.RunRecord writes it)


def load_plain(path: Path):
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


# What a run or sweep directory holds once train.py has used it.
RUN_RECORDS = (".hydra", "status.json", "checkpoints", "multirun.yaml")


def holds_run(directory: Path) -> bool:
    return any((Path(directory) / name).exists() for name in RUN_RECORDS)


def is_override_list(found) -> bool:
    """Whether a saved overrides.yaml read as what Hydra writes: a list of strings."""
    return isinstance(found, list) and all(isinstance(o, str) for o in found)


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
        if self.state in ("interrupted", "requeued"):
            where = f"at step {self.status['steps']}" if self.status.get("steps") is not None else "before training started"
            stopped = f"{self.state} {where} by {self.status.get('signal', 'a signal')}"
            if self.state == "requeued":
                return f"{stopped}; SLURM job {self.status.get('job', '?')} continues it when it runs again"
            return f"{stopped}; continue with resume=auto"
        return self.state + (f": {self.status['reason']}" if self.status.get("reason") else "")

    @property
    def state(self) -> str:
        state = self.status.get("state", "unknown")
        if state == "running" and not process_alive(self.status.get("pid")):
            return "stopped (its process is gone)"
        return state

    def curve(self, tag: str) -> dict[int, float]:
        """{step: value} of a logged scalar, steps counted from 1 as training counts them
        (TensorBoard's count from 0)."""
        return {step + 1: value for step, value, _ in self.scalars.get(tag, [])}

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


def read_logged(run_dir: Path) -> tuple[dict, list]:
    """Scalars {tag: [(step, value, wall time)]} and text samples [(step, text)] a run logged: from
    its own record, or from its TensorBoard event files for runs made before the record existed."""
    record = run_dir / RECORD
    return read_record(record) if record.is_file() else read_events(run_dir)


def read_record(path: Path) -> tuple[dict, list]:
    """metrics.jsonl's scalars and samples. A line that is not a whole record (a disk that filled
    mid-line) is skipped. A resumed run logs again from its checkpoint's step: a point at a step its
    tag already reached replaces that tag's points from that step on."""
    scalars, samples = {}, []
    for line in path.read_bytes().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
            continue
        if isinstance(entry.get("tag"), str) and all(isinstance(entry.get(k), (int, float)) for k in ("value", "time")):
            add_point(scalars.setdefault(entry["tag"], []), (entry["step"], entry["value"], entry["time"]))
        elif entry.get("tag") == "sample" and isinstance(entry.get("text"), str):
            add_point(samples, (entry["step"], entry["text"]))
    return scalars, samples


def add_point(points: list[tuple], point: tuple) -> None:
    while points and points[-1][0] >= point[0]:
        points.pop()
    points.append(point)


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
    scalars, samples = read_logged(path)
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


def is_sweep(path: Path) -> bool:
    return not (path / ".hydra").is_dir() and any((p / ".hydra").is_dir() for p in path.iterdir() if p.is_dir())
