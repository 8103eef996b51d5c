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
found: dict[Path, bytes | None] = {}  # each one's lock file as this process found it (None: none there)


def hold(directory: Path) -> bool:
    """Lock directory for this process until it ends or release(); False when this process
    holds it already. A directory another process holds is refused in one line."""
    from filelock import FileLock, Timeout

    directory = Path(directory).resolve()
    if directory in held:
        return False
    path = directory / LOCK_FILE
    lock = FileLock(path, timeout=0)
    before = contents(path)
    try:
        lock.acquire()
    except Timeout:
        pid = holder(path)
        who = f"process {pid}" if pid.isdigit() else "another process"
        raise UserError(f"{directory} is in use by {who} right now: wait for it to end, or stop it") from None
    except OSError as exc:
        raise UserError(f"cannot lock {path}: {exc.strerror or exc}") from None
    held[directory], found[directory] = lock, before
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


def contents(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def release(directory: Path) -> None:
    directory = Path(directory).resolve()
    found.pop(directory, None)
    lock = held.pop(directory, None)
    if lock is not None:
        lock.release()


def release_all() -> None:
    for directory in list(held):
        release(directory)


def discard_all() -> None:
    """Release every lock, first putting each lock file back as this process found it: a command
    that is undone leaves no lock file, or holder's number, of its own. Each is put back while still
    held: a process starting there meanwhile finds it taken (and is refused), or finds no file and
    makes its own."""
    for directory in list(held):
        with contextlib.suppress(OSError):
            if found[directory] is None:
                (directory / LOCK_FILE).unlink(missing_ok=True)
            else:
                (directory / LOCK_FILE).write_bytes(found[directory])
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
