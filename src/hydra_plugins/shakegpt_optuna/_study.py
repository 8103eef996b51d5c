"""The Optuna study behind a sweep: opened (or continued) from its storage, its trials counted,
trials orphaned by a dead sweep found, and its best trial written out.

hydra.sweeper.storage names the storage: null (in memory), an SQLAlchemy URL (sqlite:///study.db,
postgresql+psycopg://user@host/db), or journal:///<path>, Optuna's journal file (the path after the third
slash, as for sqlite: journal:////shared/lr.log is absolute), for nodes that share a file system
and no database."""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import time
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


JOURNAL = "journal:///"
# user:password@ in a database URL (the password may hold an @: the last one ends it).
PASSWORD = re.compile(r"^(?P<head>[\w+]+://[^:/@]*:)(?P<password>.*)@")


def masked(url: str | None) -> str | None:
    """The storage as logs, errors and the sweep's records name it: a password as ***."""
    return PASSWORD.sub(r"\g<head>***@", str(url)) if url else url


def journal_path(url: str) -> str:
    if not url.startswith(JOURNAL) or url == JOURNAL:
        raise UserError(f"a journal storage is journal:///<path> (journal:////shared/study.log when absolute), got {url}")
    return url[len(JOURNAL):]


def storage_for(url: str | None):
    """None (in memory), Optuna's journal file, or an RDB storage; SQLite waits for a lock held
    by a parallel trial."""
    import optuna

    if url is None:
        return None
    url = str(url)
    if url.startswith("journal:"):
        backend = optuna.storages.journal.JournalFileBackend(journal_path(url))
        return optuna.storages.JournalStorage(backend)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


def open_study(name: str, url: str | None, direction: str, sampler=None, pruner=None, create: bool = True):
    """The study, created or continued; a storage that cannot be opened is the user's to fix."""
    for attempt in range(3):
        try:
            return load_or_create(name, url, direction, sampler, pruner, create)
        except Exception as exc:  # SQLAlchemy's and Optuna's errors have no common base but Exception
            if attempt < 2 and creating_tables_at_once(exc):
                time.sleep(1)
                continue
            raise UserError(f"cannot open Optuna study {name!r} in {where(url)}: {storage_error(exc, url)}") from None


def load_or_create(name: str, url: str | None, direction: str, sampler, pruner, create: bool):
    import optuna

    storage = storage_for(url)
    if not create:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    return optuna.create_study(
        study_name=name, storage=storage, direction=direction, sampler=sampler, pruner=pruner, load_if_exists=True
    )


def creating_tables_at_once(exc: Exception) -> bool:
    """Whether two sweeps started on a new database at once (nodes of one job): Optuna creates its
    tables and version rows unguarded, and the slower sweep finds them made under it. Its second
    try opens them."""
    import sqlalchemy.exc

    return isinstance(exc, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError))


def where(url: str | None) -> str:
    return f"storage {masked(url)}" if url else "in-memory storage"


def storage_error(exc: Exception, url: str | None) -> str:
    """The storage's error in one line, without the URL's password, with the missing driver named."""
    text = one_line(exc)
    password = PASSWORD.match(str(url or ""))
    if password and password["password"]:
        text = text.replace(password["password"], "***")
    if isinstance(exc, ImportError) and str(url).startswith("postgresql"):
        text += " (the project's PostgreSQL driver is psycopg: pip install -e '.[cluster]'; postgresql+psycopg://...)"
    return text


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


def running_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


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
        "storage": masked(storage),
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
