"""sample.py's prompt, taken from the command line exactly as the shell passed it.

Hydra's override grammar reads commas as sweep lists and rejects quotes, brackets and any
non-ASCII letter, so `prompt=` and `prompt_file=` are taken out of argv before Hydra parses the
rest. Everything after `prompt=` up to the next `name=value` option is the prompt; words the shell
split apart (an unquoted prompt) are joined with single spaces.
"""

from __future__ import annotations

import re
from pathlib import Path

from shakegpt.common.errors import UserError
from shakegpt.common.options import unknown_option
from shakegpt.data import decode_utf8, read_bytes

# An option is `name=value` (`+name=`, `~name=`, dotted names) or a flag such as `--help`, `-c`.
OPTION = re.compile(r"^([+~]?[A-Za-z_][A-Za-z0-9_.]*=|--|-[A-Za-z]$)")
ESCAPES = {"n": "\n", "\\": "\\"}
# A model sees only its last block_size tokens of a prompt; this much is room for any use.
PROMPT_FILE_LIMIT = 1_000_000  # bytes, stated in sample.py's and shakegpt.attention's --help


def unescape(text: str) -> str:
    r"""`\n` is a newline and `\\` a backslash; any other backslash stays as typed."""
    return re.sub(r"\\([n\\])", lambda m: ESCAPES[m.group(1)], text)


def split_prompt_args(argv: list[str]) -> tuple[list[str], str | None, str | None]:
    """(argv without the prompt options, the prompt as typed or None, the prompt file or None)."""
    rest, prompt, prompt_file = [argv[0]], None, None
    in_prompt = False
    for word in argv[1:]:
        if in_prompt and not OPTION.match(word):
            prompt += " " + word
            continue
        in_prompt = word.startswith("prompt=")
        if in_prompt:
            prompt = word[len("prompt=") :]
        elif word.startswith("prompt_file="):
            prompt_file = word[len("prompt_file=") :]
        else:
            rest.append(word)
    return rest, prompt, prompt_file


def read_prompt(prompt: str | None, prompt_file: str | None) -> str:
    """The text to continue: prompt= with its escapes, or prompt_file= read as UTF-8, or ''.
    (A value from conf/sample.yaml may be a number: it is read as the text it was written as.)"""
    if prompt is not None and prompt_file is not None:
        raise UserError("give prompt= or prompt_file=, not both")
    if prompt_file is None:
        return unescape("" if prompt is None else str(prompt))
    path = Path(str(prompt_file))
    return decode_utf8(read_bytes(path, "prompt file", PROMPT_FILE_LIMIT), path, "prompt file")


def check_options(args: list[str], known: set[str]) -> None:
    """A misspelt option is one line naming the options (Hydra's own message takes five)."""
    for word in args:
        name = word.partition("=")[0]
        if "=" in word and not name.startswith(("hydra", "+", "~", "-")) and name not in known:  # -: Hydra's flags
            raise unknown_option(name, known, "python sample.py")
