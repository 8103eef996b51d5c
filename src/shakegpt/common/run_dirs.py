"""Where train.py's runs and sweeps go: Hydra's hydra.run.dir (hydra.sweep.dir with -m), as the
command line sets it, else as conf/config.yaml does. The one definition that resume=auto,
sample.py's newest checkpoint and train.py's directory checks read.

A directory setting is a template: `outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}-${...}` names every
run under the root `outputs`, and the glob `*/*-*` below it finds them. One without any `${...}`
names a single directory.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from shakegpt.common.paths import CONFIG_DIR

TRAIN_CONFIG = CONFIG_DIR / "config.yaml"


def override_value(arg: str) -> str:
    """An override's value as Hydra reads it: 'hydra.run.dir="a b"' names the directory a b."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        value = OverridesParser.create().parse_overrides([arg])[0].value()
    except HydraException:  # Hydra itself reports the malformed override
        return arg.split("=", 1)[1]
    return value if isinstance(value, str) else arg.split("=", 1)[1]


def configured(key: str) -> str:
    """hydra.run.dir or hydra.sweep.dir as conf/config.yaml writes it (interpolations unresolved)."""
    hydra = OmegaConf.to_container(OmegaConf.load(TRAIN_CONFIG).hydra, resolve=False)
    return str(hydra[key.split(".")[1]]["dir"])


def dir_template(args: list[str]) -> str:
    """The directory setting of train.py's command (its arguments): the last hydra.run.dir=
    (hydra.sweep.dir= with -m) typed, else conf/config.yaml's."""
    key = "hydra.sweep.dir" if "-m" in args or "--multirun" in args else "hydra.run.dir"
    typed = [override_value(a) for a in args if a.startswith(f"{key}=")]
    return typed[-1] if typed else configured(key)


def as_glob(template: str) -> str:
    """The template with each ${...} interpolation (nested ones within it too) as *."""
    out, depth, i = [], 0, 0
    while i < len(template):
        if template.startswith("${", i):
            depth, i = depth + 1, i + 2
            out.append("*" if depth == 1 else "")
            continue
        if depth and template[i] == "}":
            depth -= 1
        elif not depth:
            out.append(template[i])
        i += 1
    return re.sub(r"\*+", "*", "".join(out))


def split_template(template: str) -> tuple[Path, str]:
    """(the fixed root, the glob below it that matches every directory the template names);
    the glob is '' for a template that names one directory."""
    parts = Path(as_glob(template)).parts
    fixed = next((i for i, part in enumerate(parts) if "*" in part), len(parts))
    return Path(*parts[:fixed]) if fixed else Path("."), "/".join(parts[fixed:])


def run_roots() -> tuple[Path, Path]:
    """The roots of conf/config.yaml's run and sweep directories (outputs, multirun)."""
    return split_template(configured("hydra.run.dir"))[0], split_template(configured("hydra.sweep.dir"))[0]
