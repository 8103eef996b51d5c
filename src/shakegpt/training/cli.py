"""What train.py checks and adjusts on its command line before Hydra takes over."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from shakegpt.bookkeeping.locks import discard_all, hold, release_all
from shakegpt.bookkeeping.resume import refuse_reuse, with_resume_dir
from shakegpt.common.atomic import create_fresh
from shakegpt.common.errors import UserError, quiet_stdout, report_user_errors
from shakegpt.common.run_dirs import dir_template, split_template
from shakegpt.training import slurm
from shakegpt.training.checks import check_config, refuse_lightning_limits, typed_lightning_limits
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
    global start
    start = Start()  # a new command (tests, and a notebook, run several in one process)
    if prints_only(argv[1:]):
        return argv
    refuse_lightning_limits(typed_lightning_limits(argv[1:]))
    argv = [argv[0], *slurm_job_args(argv[1:])]
    os.environ[COMMAND_ENV] = shlex.join(argv[1:])
    argv = with_resume_dir(argv)
    directory, named = output_root(argv[1:]), is_named_directory(argv[1:])
    in_charge = not is_secondary_rank() and not RUNS_NOTHING.intersection(argv[1:])
    if named:
        refuse_links(directory)
        if in_charge:
            refuse_reuse(argv[1:], directory)
    if in_charge:
        start.top = first_missing(directory)
        if named and start.top is not None and not ("-m" in argv or "--multirun" in argv):
            start.run = directory.absolute()  # a sweep's directory holds its jobs' failures
    check_writable(directory)
    if named and in_charge:
        hold(directory)  # before Hydra writes there: a second process is refused untouched
    rank = external_rank()
    if rank != 0:
        argv = [*argv, f"hydra.job.name=train_rank{rank}", "hydra.output_subdir=null"]
    return argv


def slurm_job_args(args: list[str]) -> list[str]:
    """train.py's arguments as a SLURM job runs them. A command that names no directory gets
    one per job id: the configured ${now:...} one would differ between ranks started seconds
    apart, and for the requeued job. A job SLURM requeued (SLURM_RESTART_COUNT > 0) runs the
    same command again, continuing as with resume=auto."""
    job = slurm.job_id()
    if job is None:
        return args
    key = "hydra.sweep.dir" if "-m" in args or "--multirun" in args else "hydra.run.dir"
    if not any(a.startswith(f"{key}=") for a in args):
        args = [*args, f"{key}={output_root(args)}/slurm-{job}"]
    if slurm.restarted():
        args = [*(a for a in args if not a.startswith("resume=")), "resume=auto"]
    return args


@dataclass
class Start:
    """What this command changes on the way to its run, so that a command that ends before the run
    begins (refused, interrupted, failed) leaves the file system as it found it."""

    top: Path | None = None  # the highest directory it creates
    run: Path | None = None  # its run directory, when it creates it
    kept: dict[Path, bytes | None] = field(default_factory=dict)  # an existing run's files that starting rewrites
    begun: bool = False  # from here a failure is the run's, recorded in its directory


start = Start()


def first_missing(directory: Path) -> Path | None:
    """The highest of directory and its parents that does not exist yet (None: directory exists)."""
    missing = None
    for path in (directory.absolute(), *directory.absolute().parents):
        if path.exists():
            break
        missing = path
    return missing


def rewritten_files(run: Path, job_name: str) -> list[Path]:
    """The files of an existing run directory that starting a run there writes before its first
    step: Hydra's record of the command, the log it appends to, and the run's status."""
    hydra_records = (run / ".hydra" / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml"))
    return [*hydra_records, run / f"{job_name}.log", run / "status.json"]


class CheckBeforeWriting(Callback):
    """Hydra calls on_run_start with a single run's composed config before it creates the run
    directory: what starting the run will change is noted there for undo_start, and the config's
    values are checked, so that a refused value writes nothing."""

    @report_user_errors
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if not is_secondary_rank():
            note_run_directory(config)
        check_config(config)


def note_run_directory(config: DictConfig) -> None:
    """The run directory, when this command makes it (or made it, as a named one), else the
    files of the run there that starting this one rewrites, as they are."""
    HydraConfig.instance().set_config(config)  # as Hydra does next: the directory's name may read hydra:runtime
    run = Path(str(OmegaConf.select(config, "hydra.run.dir"))).absolute()
    start.top = start.top or first_missing(run)
    if start.top is not None and (run == start.top or start.top in run.parents):
        start.run = run
    else:
        files = rewritten_files(run, config.hydra.job.name)
        start.kept = {path: path.read_bytes() if path.is_file() else None for path in files}


def run_begins() -> None:
    """train() calls it once the run is built and its resume checked, as it records its start."""
    start.begun = True


def undo_start() -> None:
    """Put back what this command changed on the way to a run that never began: an existing run's
    files as they were, and no directory or lock file of its own (removed while still held)."""
    for path, data in start.kept.items():
        with contextlib.suppress(OSError):
            if data is not None:
                if not path.is_file() or path.read_bytes() != data:  # one left alone keeps its times
                    path.write_bytes(data)
                continue
            path.unlink(missing_ok=True)
            if path.parent.name == ".hydra":
                path.parent.rmdir()  # once empty: Hydra made it
    if start.run is not None:
        try:
            hold(start.run)
            shutil.rmtree(start.run, ignore_errors=True)
        except UserError:  # another process works there: not this command's to remove
            pass
    discard_all()
    if start.top is not None:
        remove_empty(start.run or start.top, start.top)


def remove_empty(lowest: Path, top: Path) -> None:
    """lowest and its parents up to top, each removed while empty (another command may have put
    its run beside this one's)."""
    for path in (lowest, *lowest.parents):
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            return
        if path == top:
            return


def run_interruptible(main) -> None:
    """Prepare train.py's command line, then run its main; a command that ends before its run
    begins is undone (undo_start)."""
    try:
        with undone_unless_begun():
            sys.argv = prepare_train_argv(sys.argv)
            run_answering_signals(main)
    finally:
        release_all()  # as the process's end would (tests run train.py within theirs)


@contextlib.contextmanager
def undone_unless_begun():
    """A command (train.py, or shakegpt.train) that ends in an error or a signal before its run
    begins is undone (undo_start)."""
    try:
        yield
    except BaseException as exc:
        if not start.begun and not (isinstance(exc, SystemExit) and exc.code in (None, 0)):
            undo_start()
        raise


def run_answering_signals(main) -> None:
    """A signal that no run caught (a sweep launcher waiting on its jobs, say) ends in one line and
    the shell's exit code, not a traceback."""
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
