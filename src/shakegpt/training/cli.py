"""What train.py checks and adjusts on its command line before Hydra takes over."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
from pathlib import Path

from shakegpt.bookkeeping.locks import hold, release_all
from shakegpt.bookkeeping.resume import refuse_reuse, with_resume_dir
from shakegpt.common.atomic import create_fresh
from shakegpt.common.errors import UserError, quiet_stdout, report_user_errors
from shakegpt.common.run_dirs import dir_template, split_template
from shakegpt.training.checks import refuse_lightning_limits, typed_lightning_limits
from shakegpt.training.interrupts import Interrupted, signals_interrupt


def is_named_directory(args: list[str]) -> bool:
    """Whether the command names its run (or sweep) directory, as resume=auto does for it."""
    return not split_template(dir_template(args))[1]


def output_root(args: list[str]) -> Path:
    """The directory Hydra will create for this command (or the root it creates one under)."""
    return split_template(dir_template(args))[0]


# Hydra writes the run's .hydra/ files (about 10 kB) before any of shakegpt's code runs, and
# reports a failure there as a traceback: the probe checks that much room first.
PROBE_BYTES = 64 * 1024


def check_writable(directory: Path) -> None:
    """Fail before any work when the output directory cannot be created and written."""
    tmp = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_fresh(directory, "write-test")
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise UserError(f"cannot write the output directory {directory}: {exc.strerror}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def refuse_links(directory: Path) -> None:
    """A run or sweep directory may come from someone else. Hydra, TensorBoard and the
    checkpoints write into it by fixed names, and some of them open a name as it is: a directory
    holding any symbolic link is refused, so no write can follow one out of it."""
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            if (Path(root) / name).is_symlink():
                raise UserError(
                    f"{Path(root) / name} is a symbolic link, and a run directory holds only its own files: "
                    "remove the link, or run in a new directory"
                )


# train.py's arguments as typed, for the line that tells how to continue an interrupted run; in
# the environment so that the processes a sweep launcher or DDP starts see them too.
COMMAND_ENV = "SHAKEGPT_TRAIN_ARGS"


def continue_command() -> str:
    """The command that continues this run (or sweep): the same arguments with resume=auto."""
    args = shlex.split(os.environ.get(COMMAND_ENV, ""))
    kept = [a for a in args if not a.startswith(("resume=", "ckpt_path="))]
    return shlex.join(["python", "train.py", *kept, "resume=auto"])


# Hydra's flags that print something (help, the config, its own information) and run nothing.
CONFIG_FLAGS = ("-c", "--cfg", "-i", "--info")
PRINT_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-sc", "--shell-completion", *CONFIG_FLAGS)


def prints_only(args: list[str]) -> bool:
    """Whether Hydra only prints for this command: then nothing is checked or created for it."""
    if not any(arg in PRINT_FLAGS or arg.startswith(("--cfg=", "--info=")) for arg in args):
        if "--resolve" in args:  # Hydra's refusal is a traceback
            raise UserError("--resolve goes with --cfg job (the config resolved) or --help")
        return False
    shows_config = any(arg in CONFIG_FLAGS or arg.startswith(("--cfg=", "--info=")) for arg in args)
    if shows_config and ("-m" in args or "--multirun" in args):  # Hydra's refusal is a traceback
        raise UserError("--cfg and --info show one run's config, not a sweep's: drop -m (--cfg hydra shows the sweep settings)")
    return True


def external_rank() -> int:
    """This process's global rank when torchrun or SLURM started it (0 otherwise)."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


# Hydra's flags that print something and run no task: they write nothing in a run directory.
RUNS_NOTHING = {"--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--shell-completion", "-sc"}


def is_secondary_rank() -> bool:
    """Whether torchrun, SLURM or Lightning's DDP launcher started this process for a rank
    other than 0: it works in rank 0's run directory, which rank 0 checks and locks."""
    return external_rank() != 0 or int(os.environ.get("LOCAL_RANK", "0")) != 0


@report_user_errors
def prepare_train_argv(argv: list[str]) -> list[str]:
    """check_train_argv for train.py: a refusal is one line and exit 2."""
    return check_train_argv(argv)


def check_train_argv(argv: list[str]) -> list[str]:
    """train.py's argv (or shakegpt.train's, as train.py's) after the output directory checks
    and resume=auto's redirect; a refusal raises UserError. A named directory that holds a run
    (sweep) is taken only to resume it, and locked for this process. Ranks other than 0 that a
    cluster started (torchrun, SLURM) share rank 0's run directory: they log to a file of their
    own and leave .hydra/ to rank 0."""
    if prints_only(argv[1:]):
        return argv
    refuse_lightning_limits(typed_lightning_limits(argv[1:]))
    os.environ[COMMAND_ENV] = shlex.join(argv[1:])
    check_writable(output_root(argv[1:]))
    argv = with_resume_dir(argv)
    if is_named_directory(argv[1:]):
        directory = output_root(argv[1:])
        refuse_links(directory)
        if not is_secondary_rank() and not RUNS_NOTHING.intersection(argv[1:]):
            refuse_reuse(argv[1:], directory)
            hold(directory)  # before Hydra writes there: a second process is refused untouched
    rank = external_rank()
    if rank != 0:
        argv = [*argv, f"hydra.job.name=train_rank{rank}", "hydra.output_subdir=null"]
    return argv


def run_interruptible(main) -> None:
    """Run train.py's main; a signal that no run caught (a sweep launcher waiting on its jobs,
    say) ends in one line and the shell's exit code, not a traceback."""
    try:
        with signals_interrupt():
            main()
    except BrokenPipeError:  # `python train.py --help | head`: Hydra prints the page itself
        quiet_stdout()
        sys.exit(141)
    except (KeyboardInterrupt, Interrupted) as exc:
        stop = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
        print(f"interrupted by {stop}; continue with: {continue_command()}", file=sys.stderr)
        sys.exit(stop.exit_code)
    finally:
        release_all()  # as the process's end would (tests run train.py within theirs)
