"""resume=auto: find the newest unfinished run of the same command and continue it there."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from shakegpt.status import read_status

RUN_ROOT = Path("outputs")
# Overrides that say how to run, not what to train: a run resumed with them is the same run.
NOT_CONFIG = ("resume=", "ckpt_path=", "hydra.", "+hydra.", "threads=")


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


def with_resume_dir(argv: list[str]) -> list[str]:
    """train.py's argv, with hydra.run.dir pointing at the run that resume=auto continues (when
    one exists and the command names no directory itself)."""
    args = argv[1:]
    if "resume=auto" not in args or "-m" in args or "--multirun" in args:
        return argv
    if any(a.startswith("hydra.run.dir=") for a in args):
        return argv
    run = find_unfinished_run(args)
    return argv if run is None else [*argv, f"hydra.run.dir={run}"]
