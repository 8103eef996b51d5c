"""Lightning's checkpoint I/O for train.py: atomic writes, and reads through shakegpt's checked
reader (shakegpt.bookkeeping.checkpoints)."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from shakegpt.bookkeeping.checkpoints import read_checkpoint
from shakegpt.common.atomic import WriteError, os_reason, write_bytes


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, made safe: each file is written beside its target, synced,
    then renamed over it, so a kill mid-write leaves the previous checkpoint whole, and a failed
    write leaves no partial file; reading goes through read_checkpoint. It remembers the newest
    checkpoint written whole, the one a failure message points the user at."""

    def __init__(self):
        super().__init__()
        self.last_good: tuple[Path, int] | None = None  # (path, step)

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        try:
            # Not parents=True: a run directory deleted during training is an error, not recreated.
            path.parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise WriteError(path, os_reason(exc)) from None
        # Serialised in memory first: torch.save turns a failed file write into a RuntimeError
        # without the reason, while a plain write reports it (no space left, read-only, ...).
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes(path, buffer.getbuffer(), sync=True)
        self.last_good = (path, checkpoint.get("global_step", 0))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return read_checkpoint(path)
