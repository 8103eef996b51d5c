"""A Hydra sweeper that resumes: Hydra's basic sweeper, plus `resume=auto`.

Rerun with resume=auto in the same sweep directory, the sweep leaves the jobs that finished as
they are (not even their .hydra/ is rewritten), continues interrupted jobs from their last.ckpt
(each job's own resume=auto), and runs the jobs that never started and the ones that failed.
Hydra requires plugins to live in the hydra_plugins package; the class is selected in
conf/hydra/sweeper/resumable.yaml.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from hydra.core.utils import JobReturn, JobStatus

from shakegpt.bookkeeping.resume import config_overrides
from shakegpt.bookkeeping.runs import load_plain
from shakegpt.bookkeeping.status import read_json_object, read_status
from shakegpt.common.hydra_private import basic_sweeper

log = logging.getLogger(__name__)


class ResumableSweeper(basic_sweeper()):  # Hydra's BasicSweeper (private)
    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if config.get("resume") == "auto":
            self.launcher = SkipFinishedJobs(self.launcher, Path(config.hydra.sweep.dir))


class SkipFinishedJobs:
    """Wraps a launcher: jobs whose directory holds a finished run of the same overrides are
    answered from their metrics.json; the others go to the launcher in contiguous groups, keeping
    their job numbers (and so their directories)."""

    def __init__(self, launcher, sweep_dir: Path):
        self.launcher, self.sweep_dir = launcher, sweep_dir

    def __getattr__(self, name):
        return getattr(self.launcher, name)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        returns: list[JobReturn] = []
        group: list[Sequence[str]] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            done = self.finished_job(idx, overrides)
            if done is None:
                group.append(overrides)
                continue
            if group:
                returns += self.launcher.launch(group, initial_job_idx=idx - len(group))
                group = []
            returns.append(done)
        if group:
            returns += self.launcher.launch(group, initial_job_idx=initial_job_idx + len(job_overrides) - len(group))
        return returns

    def finished_job(self, idx: int, overrides: Sequence[str]) -> JobReturn | None:
        job_dir = self.sweep_dir / str(idx)
        recorded = job_dir / ".hydra" / "overrides.yaml"
        if read_status(job_dir).get("state") != "finished" or not recorded.is_file():
            return None
        try:
            found = load_plain(recorded)
        except Exception:  # a damaged record: the job runs again
            return None
        if not isinstance(found, list) or config_overrides(map(str, found)) != config_overrides(overrides):
            return None
        metrics = read_json_object(job_dir / "metrics.json")
        if not isinstance(metrics.get("best_val_loss"), (int, float)):
            return None
        log.info("job %d (%s) finished before: left as it is", idx, " ".join(overrides))
        result = JobReturn(overrides=list(overrides), working_dir=str(job_dir), status=JobStatus.COMPLETED)
        result.return_value = metrics.get("best_val_loss", float("nan"))
        return result
