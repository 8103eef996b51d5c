"""The `name=value` command line of the commands that read a checkpoint: sample.py (through
Hydra), python -m shakegpt.evaluate and python -m shakegpt.attention. -h or --help prints the
usage; a word that is not name=value, or names no option, is one line (a UserError: exit 2)."""

from __future__ import annotations

from shakegpt.common.errors import UserError

HELP_FLAGS = ("-h", "--help")


def unknown_option(name: str, known, command: str) -> UserError:
    return UserError(f"unknown option {name}; the options are {', '.join(sorted(known))} ({command} --help)")


def read_options(argv: list[str], defaults: dict, command: str, usage: str) -> dict:
    """defaults with argv's name=value words over them, values as typed (strings); with -h or
    --help anywhere, the usage is printed and the command ends (exit 0), as argparse does."""
    if any(word in HELP_FLAGS for word in argv):
        print(usage)
        raise SystemExit(0)
    options = dict(defaults)
    for word in argv:
        name, eq, value = word.partition("=")
        if not eq:
            raise UserError(f"expected name=value, got {word!r} ({command} --help)")
        if name not in defaults:
            raise unknown_option(name, defaults, command)
        options[name] = value
    return options
