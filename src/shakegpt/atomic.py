"""Files written whole or not at all: beside the target, then renamed over it. A reader (a
report, a resumed run) never sees half a file, and a kill mid-write leaves the old one."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_figure(figure, path: Path) -> None:
    tmp = path.with_name(f".partial.{path.name}")  # keeps the suffix matplotlib reads the format from
    figure.savefig(tmp, dpi=120)
    os.replace(tmp, path)
