"""The one page writer: every page a tool writes into docs/ opens with its title and the command
that wrote it, with the date."""

from __future__ import annotations

import shlex
import statistics
from datetime import date
from pathlib import Path

from shakegpt.common.atomic import write_text


def tool_command(tool: str, argv: list[str]) -> str:
    """How a user reruns the tool: python -m shakegpt.tools.<tool> <argv>."""
    return shlex.join(["python", "-m", f"shakegpt.tools.{tool}", *argv])


def write_page(path: Path, title: str, command: str, body: list[str]) -> str:
    """'# title', 'Written by `command` on <date>.', then body's lines, atomically; the text."""
    text = "\n".join([f"# {title}", "", f"Written by `{command}` on {date.today().isoformat()}.", *body]) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    return text


def mean_sd(values: list[float]) -> str:
    """'1.8482 ± 0.0123' over seeds (sd 0 for one)."""
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def commands_section(results: dict[str, list[dict]]) -> list[str]:
    """The command of every run, one per seed, to rerun any of them."""
    return ["", "Commands (one per seed)", "", *(f"- {name}: `{m['command']}`" for name, runs in results.items() for m in runs)]
