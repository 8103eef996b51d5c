"""Files written whole or not at all: beside the target, then renamed over it. A reader (a
report, a resumed run) never sees half a file, and a kill mid-write leaves the old one. A write
that fails (a full disk, a read-only or vanished directory) leaves no partial file behind and
raises WriteError, which names the file and the reason in one sentence."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from shakegpt.common.errors import UserError


class WriteError(UserError):
    """A file of the run could not be written."""

    def __init__(self, path: Path | str, reason: str, note: str = ""):
        super().__init__(f"cannot write {path}: {reason}" + (f"; {note}" if note else ""))
        self.path, self.reason = path, reason


def os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


@contextlib.contextmanager
def replacing(path: Path, tmp: Path):
    """Write tmp in the block, then rename it over path; on failure remove tmp, raise WriteError."""
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise WriteError(path, os_reason(exc)) from None


def write_bytes(path: Path, data: bytes | memoryview, sync: bool = False) -> None:
    path = Path(path)
    with replacing(path, path.with_name(f".{path.name}.partial")) as tmp, open(tmp, "wb") as f:
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
    # The temporary name keeps the suffix matplotlib reads the format from.
    with replacing(path, path.with_name(f".partial.{path.name}")) as tmp:
        figure.savefig(tmp, dpi=120)


def quiet_background_write_errors() -> None:
    """TensorBoard writes events from a thread of its own, which prints a traceback when the disk
    fails; the training thread meets the same error at its next write and reports it in one line."""
    import threading

    default = threading.excepthook

    def hook(args):
        if not issubclass(args.exc_type, OSError):
            default(args)

    threading.excepthook = hook
