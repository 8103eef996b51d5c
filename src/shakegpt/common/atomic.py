"""Files written whole or not at all: beside the target, then renamed over it. A reader (a
report, a resumed run) never sees half a file, and a kill mid-write leaves the old one. A write
that fails (a full disk, a read-only or vanished directory) leaves no partial file behind and
raises WriteError, which names the file and the reason in one sentence.

Run directories and caches travel between people, so nothing here follows a link: each
temporary file is created fresh (exclusively, under a random name, so a link planted in the
directory is never opened), and a target that is itself a symbolic link is refused."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path

from shakegpt.common.errors import UserError

# O_EXCL with O_CREAT refuses any existing name, a symbolic link included; O_NOFOLLOW where the
# system has it (not Windows) says so twice.
FRESH = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


class WriteError(UserError):
    """A file of the run could not be written."""

    def __init__(self, path: Path | str, reason: str, note: str = ""):
        super().__init__(f"cannot write {path}: {reason}" + (f"; {note}" if note else ""))
        self.path, self.reason = path, reason


def os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


FILE_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a character device",
              stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def special_kind(mode: int) -> str | None:
    """What a file of this st_mode is when it is not a regular file ('a directory', ...), else None."""
    kind = stat.S_IFMT(mode)
    return None if kind == stat.S_IFREG else FILE_KINDS.get(kind, "not a regular file")


def refuse_link(path: Path) -> None:
    if Path(path).is_symlink():
        raise WriteError(path, "it is a symbolic link, and shakegpt never writes through one (remove it)")


def refuse_special(path: Path) -> None:
    """A directory, device (/dev/full) or pipe is never renamed over: only a file is replaced."""
    try:
        kind = special_kind(os.stat(path).st_mode)
    except OSError:
        return  # absent: it will be created
    if kind is not None:
        raise WriteError(path, f"it is {kind}, not a file")


def create_fresh(directory: Path, name: str) -> tuple[int, Path]:
    """(descriptor, path) of a new, empty file in directory, named after name; the mode is the
    umask's, as open() gives."""
    while True:
        tmp = directory / f".{name}.{secrets.token_hex(6)}.partial"
        try:
            return os.open(tmp, FRESH, 0o666), tmp
        except FileExistsError:  # a name taken by chance (or planted): draw another
            continue


@contextlib.contextmanager
def replacing(path: Path):
    """A fresh binary file to write in the block, renamed over path at its end; on any failure
    (or Ctrl-C) the temporary file is removed, and an OSError becomes a WriteError."""
    path = Path(path)
    refuse_link(path)
    refuse_special(path)
    tmp = None
    try:
        fd, tmp = create_fresh(path.parent, path.name)
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(exc, OSError):
            raise WriteError(path, os_reason(exc)) from None
        raise


def write_bytes(path: Path, data: bytes | memoryview, sync: bool = False) -> None:
    with replacing(path) as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_figure(figure, path: Path) -> None:
    path = Path(path)
    with replacing(path) as f:
        figure.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=120)


def quiet_background_write_errors() -> None:
    """TensorBoard writes events from a thread of its own, which prints a traceback when the disk
    fails; the training thread meets the same error at its next write and reports it in one line."""
    import threading

    default = threading.excepthook

    def hook(args):
        if not issubclass(args.exc_type, OSError):
            default(args)

    threading.excepthook = hook
