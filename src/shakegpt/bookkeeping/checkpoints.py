"""Checkpoint files: written atomically, read without unpickling code."""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from shakegpt.common.atomic import WriteError, os_reason, write_bytes
from shakegpt.common.errors import UserError


def read_checkpoint(path: str | Path) -> dict:
    """A shakegpt checkpoint as a dict. weights_only=True: tensors and plain containers only,
    so a crafted file cannot run code while loading."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a directory; name a .ckpt file in it, e.g. {path}/checkpoints/best.ckpt")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"unsupported global:?\s+(?:GLOBAL\s+)?(\S+)", str(exc), re.IGNORECASE)
        if found:
            raise UserError(
                f"refused to load {path}: it would import {found.group(1)}, and a checkpoint holds only tensors and plain values"
            ) from None
        raise UserError(f"{path} is corrupted or not a checkpoint file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UserError(f"checkpoint {path} is corrupted or truncated ({str(exc).strip().splitlines()[0]})") from None
    meta = checkpoint.get("shakegpt") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "model_class" not in meta:
        raise UserError(f"{path} is not a shakegpt checkpoint")
    return checkpoint


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
