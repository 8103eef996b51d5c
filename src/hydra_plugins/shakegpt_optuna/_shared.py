"""Sweeps sharing one study at once (one per node of a cluster job): the lock each holds while it
counts the study's trials and asks for new ones, so that together they run n_trials trials and
no trial twice. Without it, two sweeps could both count n_trials - 1 and both ask."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging

from hydra_plugins.shakegpt_optuna._study import journal_path, masked

log = logging.getLogger(__name__)


def study_lock(url: str | None, study_name: str):
    """A context manager that holds the study's lock, wherever the sweeps sharing it can reach:
    PostgreSQL's own advisory lock on the server; for Optuna's journal file and SQLite, a lock
    file beside it in Optuna's way (which the journal itself relies on, NFS included). A study in
    memory has nobody to share it with."""
    if url is None:
        return contextlib.nullcontext()
    if url.startswith("journal:"):
        return file_lock(journal_path(url))
    from sqlalchemy.engine import make_url

    database = make_url(url)
    if database.get_backend_name() == "postgresql":
        return advisory_lock(url, study_name)
    if database.get_backend_name() == "sqlite":
        path = database.database
        return file_lock(path) if path and path != ":memory:" else contextlib.nullcontext()
    warn_uncounted(masked(url))
    return contextlib.nullcontext()


@functools.cache  # once per sweep, not at every batch
def warn_uncounted(storage: str) -> None:
    log.warning("sweeps that share a study in %s may together run a few trials more than n_trials: "
                "PostgreSQL, SQLite and journal:/// storages count them exactly", storage)


@contextlib.contextmanager
def file_lock(path: str):
    from optuna.storages.journal import JournalFileOpenLock

    lock = JournalFileOpenLock(f"{path}.sweep")  # the file <path>.sweep.lock, while held
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def advisory_lock(url: str, study_name: str):
    """PostgreSQL's transaction-level advisory lock, keyed by the study's name: the server frees
    it when the transaction ends, or when the connection does (a sweep killed while holding it)."""
    import sqlalchemy

    digest = hashlib.blake2b(f"shakegpt sweep {study_name}".encode(), digest_size=8).digest()
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": int.from_bytes(digest, "big", signed=True)})
            yield
    finally:
        engine.dispose()
