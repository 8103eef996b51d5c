"""The Optuna study behind a sweep: opened (or continued) from its storage, its trials counted,
trials orphaned by a dead sweep found, and its best trial written out."""

from __future__ import annotations

import logging
import math
import os
import socket
from pathlib import Path

from omegaconf import OmegaConf

from shakegpt.bookkeeping.runs import OPTUNA_RESULTS, process_alive
from shakegpt.common.atomic import write_text
from shakegpt.common.errors import UserError, one_line

log = logging.getLogger(__name__)

OWNER = "sweeper_process"  # user attribute: host:pid of the sweep that asked for the trial
JOB_DIR = "job_dir"  # user attribute: where the trial's job ran
# Studies this process holds in memory, by name: how a job that the basic launcher runs in this
# same process reaches its trial when the study has no storage.
IN_PROCESS: dict = {}


def quiet_optuna() -> None:
    """Optuna's own handler prints in its own format past Hydra's logging (and alembic's 7 lines
    when an SQLite file is created): route it through Hydra's, at warnings, and keep alembic out."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def storage_for(url: str | None):
    """None (in memory) or an RDB storage; SQLite waits for a lock held by a parallel trial."""
    import optuna

    if url is None:
        return None
    engine = {"connect_args": {"timeout": 60}} if str(url).startswith("sqlite") else None
    return optuna.storages.RDBStorage(str(url), engine_kwargs=engine)


def open_study(name: str, url: str | None, direction: str, sampler=None, pruner=None, create: bool = True):
    """The study, created or continued; a storage that cannot be opened is the user's to fix."""
    import optuna

    try:
        storage = storage_for(url)
        if not create:
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        return optuna.create_study(
            study_name=name, storage=storage, direction=direction, sampler=sampler, pruner=pruner, load_if_exists=True
        )
    except Exception as exc:  # SQLAlchemy's and Optuna's errors have no common base but Exception
        where = f"storage {url}" if url else "in-memory storage"
        raise UserError(f"cannot open Optuna study {name!r} in {where}: {one_line(exc)}") from None


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def orphaned(trials) -> list:
    """Running trials whose sweep process is gone (killed, or interrupted): trials of this host
    only, as a process elsewhere cannot be checked."""
    here = socket.gethostname()
    found = []
    for trial in trials:
        host, _, pid = str(trial.user_attrs.get(OWNER, "")).rpartition(":")
        if host == here and pid.isdigit() and not process_alive(int(pid)):
            found.append(trial)
    return found


def counts(study) -> dict[str, int]:
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "failed": states.count(TrialState.FAIL),
        "running": states.count(TrialState.RUNNING),
    }


def ended(study) -> int:
    """Trials that count towards n_trials: complete, pruned or failed; not one still running
    (nor one whose sweep died while it ran: it runs again)."""
    number = counts(study)
    return number["complete"] + number["pruned"] + number["failed"]


def best_trial(study):
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if math.isfinite(t.value)]
    if not complete:
        return None
    pick = min if study.direction.name == "MINIMIZE" else max
    return pick(complete, key=lambda t: t.value)


def write_results(study, sweep_dir: Path, storage: str | None, n_trials: int) -> dict:
    """optimization_results.yaml in the sweep directory: the study's best trial and its tally."""
    best = best_trial(study)
    results = {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": storage,
        "direction": study.direction.name.lower(),
        "n_trials": n_trials,
        "trials": counts(study),
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else best.value,
        "best_params": {} if best is None else dict(best.params),
        "best_job_dir": None if best is None else best.user_attrs.get(JOB_DIR),
    }
    write_text(Path(sweep_dir) / OPTUNA_RESULTS, OmegaConf.to_yaml(OmegaConf.create(results)))
    return results
