"""One train.py process at a time in a run (or sweep) directory: it holds a lock file there while
it works. The system releases the lock when the process ends, however it ends (a kill
included), so a dead run never leaves its directory locked."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from shakegpt.common.errors import UserError

LOCK_FILE = "train.lock"

# The directories this process holds, by resolved path: a lock is taken once per process (a
# second lock on the same file would wait on the first).
held: dict[Path, object] = {}


def hold(directory: Path) -> bool:
    """Lock directory for this process until it ends or release(); False when this process
    holds it already. A directory another process holds is refused in one line."""
    from filelock import FileLock, Timeout

    directory = Path(directory).resolve()
    if directory in held:
        return False
    path = directory / LOCK_FILE
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        pid = holder(path)
        who = f"process {pid}" if pid.isdigit() else "another process"
        raise UserError(f"{directory} is in use by {who} right now: wait for it to end, or stop it") from None
    except OSError as exc:
        raise UserError(f"cannot lock {path}: {exc.strerror or exc}") from None
    held[directory] = lock
    with contextlib.suppress(OSError):  # who holds it, for the message above (the flock is the lock)
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
    return True


def holder(path: Path) -> str:
    """The process id a lock file's holder wrote in it ('' when unreadable)."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read(32).strip()
    except (OSError, UnicodeDecodeError):
        return ""


def release(directory: Path) -> None:
    lock = held.pop(Path(directory).resolve(), None)
    if lock is not None:
        lock.release()


def release_all() -> None:
    for directory in list(held):
        release(directory)


@contextlib.contextmanager
def holding(directory: Path):
    """Hold directory's lock in the block, released after it unless held before it."""
    taken = hold(directory)
    try:
        yield
    finally:
        if taken:
            release(directory)
