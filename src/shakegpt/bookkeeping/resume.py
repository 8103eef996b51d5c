"""resume=auto: find the newest unfinished run (or sweep) of the same command and continue it there."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from omegaconf import DictConfig

from shakegpt.bookkeeping.checkpoints import check_resumable, read_checkpoint
from shakegpt.bookkeeping.runs import holds_run, is_override_list, load_plain
from shakegpt.bookkeeping.status import read_status
from shakegpt.common.errors import UserError
from shakegpt.common.run_dirs import dir_template, override_value, split_template

log = logging.getLogger(__name__)

# Overrides that say how to run, not what to train: a run resumed with them is the same run.
# (Flags such as -m are not overrides.)
# How a command ran, not what it trained: hydra/... picks a sweeper or launcher, which a run's
# recorded task overrides do not hold.
NOT_CONFIG = ("resume=", "ckpt_path=", "hydra.", "+hydra.", "hydra/", "threads=", "-")


def config_overrides(overrides) -> list[str]:
    return sorted(o for o in overrides if not o.startswith(NOT_CONFIG))


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


def newest_unfinished(candidates, read_overrides, overrides: list[str], age) -> Path | None:
    """Of (directory, file recording its overrides) pairs, the directory not finished, launched
    with the same config overrides, that age() says is newest. A directory whose record cannot
    be read is passed over with a warning line."""
    wanted = config_overrides(overrides)
    same = []
    for directory, recorded in candidates:
        if read_status(directory).get("state") == "finished":
            continue
        try:
            found = read_overrides(recorded)
        except Exception:  # YAML's and OmegaConf's errors share no base
            found = None
        if not is_override_list(found):
            print(f"warning: resume=auto passes over {directory}: {recorded} is not a list of overrides", file=sys.stderr)
        elif config_overrides(found) == wanted:
            same.append(directory)
    return max(same, key=age, default=None)


def find_unfinished_run(overrides: list[str], root: Path, pattern: str) -> Path | None:
    """The unfinished run of these overrides among root's directories that match pattern (as
    hydra.run.dir names them), the one with the newest last checkpoint."""
    runs = (status_file.parent for status_file in root.glob(f"{pattern}/status.json"))
    candidates = (
        (run, run / ".hydra" / "overrides.yaml")
        for run in runs
        if last_checkpoint(run).is_file() and (run / ".hydra" / "overrides.yaml").is_file()
    )
    return newest_unfinished(candidates, load_plain, overrides, age=lambda run: last_checkpoint(run).stat().st_mtime)


def find_unfinished_sweep(overrides: list[str], root: Path, pattern: str) -> Path | None:
    """The sweep of these overrides among root's directories that match pattern (as
    hydra.sweep.dir names them) that did not end, the newest."""
    candidates = ((saved.parent, saved) for saved in root.glob(f"{pattern}/multirun.yaml"))
    return newest_unfinished(
        candidates, lambda saved: load_plain(saved)["hydra"]["overrides"]["task"], overrides,
        age=lambda sweep: (sweep / "multirun.yaml").stat().st_mtime,
    )


def with_resume_dir(argv: list[str]) -> list[str]:
    """train.py's argv, with hydra.run.dir (hydra.sweep.dir for -m) pointing at the run (sweep)
    that resume=auto continues, when one exists and the command names no single directory
    itself. Searched where the command's directory setting (or conf/config.yaml's) puts runs."""
    args = argv[1:]
    if "resume=auto" not in args:
        return argv
    root, pattern = split_template(dir_template(args))
    if not pattern:  # one directory, named: the run continues there (train_job's resume_from)
        return argv
    multirun = "-m" in args or "--multirun" in args
    found = (find_unfinished_sweep if multirun else find_unfinished_run)(args, root, pattern)
    key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    return argv if found is None else [*(a for a in argv if not a.startswith(key)), f"{key}{found}"]


def recorded_command(directory: Path, multirun: bool) -> list[str]:
    """The overrides a run (sweep) directory was started with, as Hydra recorded them."""
    record = directory / ("multirun.yaml" if multirun else ".hydra/overrides.yaml")
    try:
        found = load_plain(record)
        found = found["hydra"]["overrides"]["task"] if multirun else found
    except Exception:  # missing, unparsable, or not the layout Hydra writes
        found = None
    if not is_override_list(found):
        raise UserError(f"{directory} holds no readable record of the command that started it ({record}): run in a new directory")
    return found


def refuse_other_command(args: list[str], directory: Path, multirun: bool) -> None:
    """resume=auto continues a run (sweep) only with the command it was started with; a single
    run may raise trainer.max_steps to train on."""
    free = () if multirun else ("trainer.max_steps=",)
    wanted = [o for o in config_overrides(args) if not o.startswith(free)]
    recorded = [o for o in config_overrides(recorded_command(directory, multirun)) if not o.startswith(free)]
    if wanted != recorded:
        had = shlex.join(o for o in recorded if o not in wanted)
        has = shlex.join(o for o in wanted if o not in recorded)
        difference = f"{has} instead of {had}" if has and had else f"{has} added" if has else f"{had} left out"
        raise UserError(
            f"the {'sweep' if multirun else 'run'} in {directory} was started with another command ({difference}): "
            "resume it with the command it was started with, or name a new directory"
        )


def refuse_no_steps_left(args: list[str], directory: Path) -> None:
    """A run whose last.ckpt is at trainer.max_steps (this command's, else the run's own) has
    nothing to resume: refused here, before anything is written, rather than in resume_from."""
    last = last_checkpoint(directory)
    if not last.is_file():
        return
    step = read_checkpoint(last).get("global_step", 0)  # refuses a damaged file
    typed = [override_value(a) for a in args if a.startswith("trainer.max_steps=")]
    try:
        max_steps = int(typed[-1]) if typed else load_plain(directory / ".hydra" / "config.yaml")["trainer"]["max_steps"]
    except Exception:  # left to the config check and resume_from
        return
    if isinstance(max_steps, int) and step >= max_steps:
        raise UserError(f"{last} is at step {step}, trainer.max_steps={max_steps}: raise max_steps to train on")


def refuse_reuse(args: list[str], directory: Path) -> None:
    """A command aimed at a directory that holds a run (sweep) goes ahead only to resume it for
    real: with resume=auto, the command it was started with, and steps left to train. Checked
    before Hydra writes anything there, so a refused command leaves the directory as it was."""
    multirun = "-m" in args or "--multirun" in args
    if not holds_run(directory):
        return
    what = "sweep" if multirun else "run"
    if "resume=auto" not in args:
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        raise UserError(f"{directory} holds a {what} already: continue it with resume=auto, or name a new directory in {key}")
    refuse_other_command(args, directory, multirun)
    if not multirun:
        refuse_no_steps_left(args, directory)


def resume_from(cfg: DictConfig, out: Path, model) -> tuple[str | None, int]:
    """(checkpoint, its step) this run continues from: with resume=auto this directory's
    last.ckpt (train.py pointed the run at the newest unfinished run of the same command), else
    ckpt_path; (None, 0) for a fresh start. The file must hold this very model."""
    if cfg.resume == "auto" and last_checkpoint(out).is_file():
        path = last_checkpoint(out)
    elif cfg.ckpt_path is not None:
        path = Path(cfg.ckpt_path)
    else:
        if cfg.resume == "auto":
            log.info("resume=auto: no unfinished run of this command with a checkpoint; starting fresh")
        return None, 0
    step = check_resumable(path, model)  # refuses unsafe, corrupted, foreign and other models' files
    if step >= cfg.trainer.max_steps:
        raise UserError(f"{path} is at step {step}, trainer.max_steps={cfg.trainer.max_steps}: raise max_steps to train on")
    log.info("resuming from %s at step %d", path, step)
    return str(path), step
