"""resume=auto: find the newest unfinished run (or sweep) of the same command and continue it there."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from shakegpt.status import read_status

RUN_ROOT, SWEEP_ROOT = Path("outputs"), Path("multirun")
# Overrides that say how to run, not what to train: a run resumed with them is the same run.
# (Flags such as -m are not overrides.)
NOT_CONFIG = ("resume=", "ckpt_path=", "hydra.", "+hydra.", "threads=", "-")


def config_overrides(overrides) -> list[str]:
    return sorted(o for o in overrides if not o.startswith(NOT_CONFIG))


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


def find_unfinished_run(overrides: list[str], root: Path = RUN_ROOT) -> Path | None:
    """The run under root, not finished, with a last checkpoint and the same config overrides,
    whose checkpoint is newest."""
    wanted = config_overrides(overrides)
    candidates = []
    for status_file in root.glob("*/*/status.json"):
        run = status_file.parent
        overrides_file = run / ".hydra" / "overrides.yaml"
        if read_status(run).get("state") == "finished" or not last_checkpoint(run).is_file():
            continue
        if overrides_file.is_file() and config_overrides(OmegaConf.load(overrides_file)) == wanted:
            candidates.append(run)
    return max(candidates, key=lambda run: last_checkpoint(run).stat().st_mtime, default=None)


def find_unfinished_sweep(overrides: list[str], root: Path = SWEEP_ROOT) -> Path | None:
    """The sweep under root that did not end, launched with the same overrides, newest first."""
    wanted = config_overrides(overrides)
    candidates = []
    for saved in root.glob("*/*/multirun.yaml"):
        sweep = saved.parent
        if read_status(sweep).get("state") == "finished":
            continue
        task = OmegaConf.load(saved).hydra.overrides.task
        if config_overrides(task) == wanted:
            candidates.append(sweep)
    return max(candidates, key=lambda sweep: (sweep / "multirun.yaml").stat().st_mtime, default=None)


def with_resume_dir(argv: list[str]) -> list[str]:
    """train.py's argv, with hydra.run.dir (hydra.sweep.dir for -m) pointing at the run (sweep)
    that resume=auto continues, when one exists and the command names no directory itself."""
    args = argv[1:]
    if "resume=auto" not in args:
        return argv
    multirun = "-m" in args or "--multirun" in args
    key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    if any(a.startswith(key) for a in args):
        return argv
    found = find_unfinished_sweep(args) if multirun else find_unfinished_run(args)
    return argv if found is None else [*argv, f"{key}{found}"]
