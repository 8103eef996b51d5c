"""The lab from Python and in a notebook: train, sample, plot, evaluate, compare.

    import shakegpt
    run = shakegpt.train("model=v6", "trainer.max_steps=500")   # train.py's overrides, in this process
    run.sample(prompt="ROMEO:", max_new_tokens=200)             # text, as sample.py draws it
    run.plot()                                                  # train and val loss by step
    shakegpt.compare(run, shakegpt.load_run("outputs/<date>/<time>-v5")).plot()

A thin layer over what the commands do: train() runs train.py's own checks and task
(training.cli, training.job) through Hydra in this process, so a run gets the same config from
conf/, the same run directory, checkpoints, status.json and lock; a run started here resumes from
the command line (`python train.py <overrides> hydra.run.dir=<run> resume=auto`) and the other way
round (`train(<overrides>, run_dir=<run>, resume="auto")`). sweep() runs `python train.py -m`.
The Run methods call sample.py's, shakegpt.evaluate's and shakegpt.attention's functions, and a
user's mistake is a UserError, shown in a notebook as its one line.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shakegpt.bookkeeping import runs
from shakegpt.bookkeeping.locks import release
from shakegpt.bookkeeping.report import fmt, run_report
from shakegpt.bookkeeping.sweep_summary import summary_row, table_lines, val_curves, varying_overrides
from shakegpt.common.curves import Curve, curves_figure
from shakegpt.common.errors import UserError, find_user_error
from shakegpt.common.paths import CONFIG_DIR, PROJECT_ROOT
from shakegpt.common.run_dirs import configured
from shakegpt.training.checks import refuse_lightning_limits, typed_lightning_limits
from shakegpt.training.cli import check_train_argv, is_named_directory, output_root, undone_unless_begun
from shakegpt.training.interrupts import Interrupted

__all__ = ["Comparison", "Run", "TrainingInterrupted", "compare", "load_run", "sweep", "train"]


class TrainingInterrupted(KeyboardInterrupt):
    """train() or sweep() stopped by the kernel's interrupt (Jupyter's stop button), Ctrl-C or
    SIGTERM: training stopped after the step it was in, with last.ckpt written there and
    status.json saying interrupted. .run is the run (None for a sweep); the message says how to
    continue it."""

    def __init__(self, message: str, run: Run | None = None):
        super().__init__(message)
        self.run = run

    def _render_traceback_(self) -> list[str]:  # IPython shows the one line
        return [f"{type(self).__name__}: {self}"]


class Run(runs.Run):
    """A run directory as data (bookkeeping.runs.Run: .path, .config, .overrides, .status,
    .metrics, .curve(tag), .state, .step), read when train() or load_run() returned it, with
    what a notebook does with a run."""

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}: {self.status_line}, step {self.step}/{self.max_steps}, val loss {fmt(self.last('val/loss'))})"

    def checkpoint(self, which: str = "best") -> Path:
        """The path of the run's best.ckpt (lowest validation loss) or last.ckpt."""
        if which not in ("best", "last"):
            raise UserError(f"checkpoint must be best or last, got {which!r}")
        path = self.path / "checkpoints" / f"{which}.ckpt"
        if not path.is_file():
            raise UserError(f"{path} does not exist: the run wrote no {which}.ckpt (it writes them at its evaluations)")
        return path

    def model(self, checkpoint: str = "best", device: str = "auto"):
        """The model of a checkpoint of this run (a plain torch module in eval mode) on device, as sample.py loads it."""
        from shakegpt.bookkeeping.checkpoints import load_model
        from shakegpt.sampling.generate import pick_device

        return load_model(self.checkpoint(checkpoint)).to(pick_device(device))

    def sample(self, prompt: str = "", max_new_tokens: int = 500, temperature: float = 1.0, top_k: int | None = None,
               seed: int = 1337, num_samples: int = 1, checkpoint: str = "best", device: str = "auto") -> str | list[str]:
        """Text from the run's model, as `python sample.py` draws it with the same options (the
        same seed gives the same text on the same device): the prompt followed by max_new_tokens
        generated characters; a list of num_samples texts when num_samples > 1. The prompt is
        taken as it is (no escapes); empty: start from token 0, a newline, as the lecture."""
        from shakegpt.sampling.generate import sample_texts

        with one_line_errors(), model_threads(self.model(checkpoint, device)) as model:
            texts = sample_texts(model, prompt, max_new_tokens, temperature, top_k, seed, num_samples)
        return texts[0] if num_samples == 1 else texts

    def curves(self) -> dict[str, dict[int, float]]:
        """The losses the run logged at its evaluations: {"train": {step: loss}, "val": {step: loss}}."""
        return {"train": self.curve("train/loss"), "val": self.curve("val/loss")}

    def plot(self):
        """A matplotlib Figure of the train (dashed) and val loss against step."""
        curves = self.curves()
        lines = [Curve("val", curves["val"]), Curve("train", curves["train"], linestyle="--", same_colour_as_previous=True)]
        return displayable(curves_figure([c for c in lines if c.points], f"{self.path}: loss at each evaluation", ylabel="loss"))

    def evaluate(self, split: str = "val", checkpoint: str = "best", device: str = "auto") -> float:
        """The checkpoint's mean loss over the whole split (train, val or test), every position
        scored once, as `python -m shakegpt.evaluate` prints it: no sampling noise."""
        from shakegpt.evaluate import check_split, score_checkpoint

        with one_line_errors():
            check_split(split)
            with model_threads(self.model(checkpoint)):  # the threads for this model's size
                return score_checkpoint(self.checkpoint(checkpoint), split, device)[0]

    def attention(self, prompt: str | None = None, checkpoint: str = "best", device: str = "cpu"):
        """A matplotlib Figure of the model's attention maps for prompt (its last block_size
        characters), one heatmap per layer and head, as `python -m shakegpt.attention` draws
        them; prompt None: the lines of Romeo and Juliet that command uses."""
        from shakegpt.attention import DEFAULT_PROMPT, attention_figure

        if prompt is not None and not prompt:
            raise UserError("the prompt is empty: give some text, or None for the default prompt")
        with one_line_errors(), model_threads(self.model(checkpoint, device)) as model:
            return displayable(attention_figure(model, DEFAULT_PROMPT if prompt is None else prompt, str(self.path)))

    def report(self) -> str:
        """The text `python report.py <run>` prints: status, progress, losses, the last sample."""
        return run_report(self)


def displayable(figure):
    """figure, which IPython (Jupyter, Colab) then shows as a PNG even in a notebook that never set
    matplotlib up (%matplotlib inline, or importing pyplot); a format the notebook chose stays."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    if shell is not None:
        from IPython.core.pylabtools import print_figure

        formatters = shell.display_formatter.formatters
        if not any(type(figure) in formatter.type_printers for formatter in formatters.values()):
            formatters["image/png"].for_type(type(figure), lambda shown: print_figure(shown, "png", bbox_inches="tight"))
    return figure


@contextlib.contextmanager
def model_threads(model):
    """Yields model, with torch's CPU threads as training picks them for its size (tiny models
    run many times faster on one, on a busy machine most of all); the caller's count after."""
    import torch

    from shakegpt.sampling.generate import use_threads

    before = torch.get_num_threads()
    use_threads(model, None)  # sample.py's choice
    try:
        yield model
    finally:
        torch.set_num_threads(before)


def load_run(path: str | Path) -> Run:
    """The run in a run directory that train.py, train() or a sweep wrote."""
    with one_line_errors():
        return Run(**vars(runs.load_run(Path(path))))


@dataclass
class Comparison:
    """Runs side by side: .rows, one dict per run with the columns of a sweep's summary.csv
    (the overrides column keeps what differs between the runs); .plot(), their val loss
    curves; printed (or shown in a notebook), a Markdown table. .path: a sweep's directory."""

    runs: list[Run]
    path: Path | None = None

    @property
    def rows(self) -> list[dict]:
        """One dict per run: summary.csv's columns, the overrides column holding what differs."""
        own = varying_overrides(self.runs)[1]
        return [summary_row(run) | {"overrides": own[run.path]} for run in self.runs]

    def plot(self):
        """A matplotlib Figure of every run's val loss against step."""
        labels = varying_overrides(self.runs)[1]
        title = f"{self.path}: validation loss per job" if self.path else "validation loss"
        return displayable(curves_figure(val_curves(self.runs, labels), title))

    def __str__(self) -> str:
        return "\n".join(table_lines(self.rows))

    def _repr_markdown_(self) -> str:  # a notebook shows the table
        return str(self)


def compare(*runs_: Run | str | Path) -> Comparison:
    """The runs (Run objects or run directories) side by side: a table and their curves."""
    if not runs_:
        raise UserError("compare() takes one run or more (runs or run directories)")
    return Comparison([run if isinstance(run, Run) else load_run(run) for run in runs_])


def train(*overrides: str, run_dir: str | Path | None = None, resume: str | None = None) -> Run:
    """Train one run, as `python train.py <overrides>` does, in this process: the same config
    from conf/, checks, run directory (a new one at each call, even two in one second), files,
    checkpoints and progress bar. The kernel's interrupt (Ctrl-C) stops it after the current step
    with last.ckpt written and raises TrainingInterrupted. run_dir: the run directory (as
    hydra.run.dir=); resume="auto": continue the newest unfinished run of these overrides (or the
    one in run_dir) from its last.ckpt, as resume=auto does. Several processes (DDP) are refused:
    they start from the command line."""
    args = with_options(checked_overrides(overrides, "train"), "hydra.run.dir", run_dir, resume)
    with one_line_errors():
        refuse_lightning_limits(typed_lightning_limits(args))  # first, as train.py: before Hydra reads them
        argv = resume_dir(["train.py", *args])
        config, named = composed(argv[1:])
        refuse_several_processes(config.trainer, argv[1:])
        if not is_named_directory(argv[1:]):
            argv.append(f"hydra.run.dir={hydra_quoted(fresh_directory(named))}")
        argv = check_train_argv(argv)  # train.py's refusals; the directory is locked for this process
        directory = output_root(argv[1:]).resolve()
        try:
            with undone_unless_begun():  # as train.py: a run refused before it began leaves nothing
                failure = run_in_process(argv[1:])
                if failure is not None:
                    raise failure
        except Interrupted as stop:
            raise interrupted(stop, directory, overrides) from None
        finally:
            release(directory)
        return load_run(directory)


def sweep(*overrides: str, sweep_dir: str | Path | None = None, resume: str | None = None) -> Comparison:
    """Several runs, `python train.py -m <overrides>`: comma-separated values (model.n_head=1,2,4)
    make one job each, in a process of its own whose output shows here, into one sweep directory
    with summary.md, summary.csv and curves.png; the jobs come back as a Comparison. sweep_dir:
    the sweep directory (as hydra.sweep.dir=; default a new one under multirun/); resume="auto"
    continues an interrupted sweep, as on the command line."""
    args = with_options(["-m", *checked_overrides(overrides, "sweep")], "hydra.sweep.dir", sweep_dir, resume)
    with one_line_errors():
        argv = resume_dir(["train.py", *args])
        if not is_named_directory(argv[1:]):
            argv.append(f"hydra.sweep.dir={hydra_quoted(fresh_directory(now_resolved(configured('hydra.sweep.dir'))))}")
        directory = output_root(argv[1:]).resolve()
        code, error = run_showing_output([sys.executable, str(PROJECT_ROOT / "train.py"), *argv[1:]])
        if code in (130, 143):
            raise TrainingInterrupted(f"the sweep stopped; continue it with shakegpt.sweep(..., sweep_dir={str(directory)!r}, resume='auto')")
        if code != 0:
            raise UserError(f"the sweep stopped with exit code {code}: {error or 'its output above says why'}")
        return Comparison([load_run(path) for path in runs.job_dirs(directory)], directory)


# What train() and sweep() take from train.py's command line: overrides, not its flags.
FLAG_HINTS = {"train": "for a sweep (-m) use shakegpt.sweep()", "sweep": "-m is implied"}


def checked_overrides(overrides: tuple, caller: str) -> list[str]:
    """The overrides as train.py takes them; a flag or a non-string is refused in one line."""
    for override in overrides:
        if not isinstance(override, str):
            raise UserError(f"{caller}() takes overrides as strings such as \"model=v6\", got {override!r}")
        if override.startswith("-"):
            raise UserError(f"{caller}() takes train.py's overrides (name=value), not its flags such as {override} ({FLAG_HINTS[caller]})")
    return list(overrides)


def with_options(args: list[str], directory_key: str, directory: str | Path | None, resume: str | None) -> list[str]:
    """args with the keyword options as the overrides they stand for."""
    if directory is not None:
        args = [*args, f"{directory_key}={hydra_quoted(directory)}"]
    return args if resume is None else [*args, f"resume={resume}"]


def hydra_quoted(path: str | Path) -> str:
    """A directory as the value of a Hydra override: quoted when Hydra's grammar would read
    part of it otherwise (a comma, a space, brackets, quotes)."""
    text = str(path)
    return text if re.fullmatch(r"[\w./~:-]+", text) else "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def resume_dir(argv: list[str]) -> list[str]:
    """argv pointed at the run (sweep) resume=auto continues, as train.py's command line does."""
    from shakegpt.bookkeeping.resume import with_resume_dir

    return with_resume_dir(argv)


@contextlib.contextmanager
def train_hydra():
    """Hydra set up on conf/ as train.py's @hydra.main sets it up (job name train); a
    GlobalHydra the caller had set up is put back afterwards."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    callers = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()  # initialize_config_dir refuses to replace one
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), job_name="train", version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().clear()
        if callers is not None:
            GlobalHydra.instance().initialize(callers)


def composed(args: list[str]):
    """(train.py's config for these overrides, the run directory Hydra would name for it)."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    with train_hydra():
        config = compose("config", args, return_hydra_config=True)
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)  # for ${hydra:runtime.choices.model} in the name
    try:
        return config, str(config.hydra.run.dir)
    finally:
        HydraConfig.instance().cfg = previous


def now_resolved(template: str) -> str:
    """A directory setting with its ${now:<format>} parts filled in, as Hydra fills them."""
    now = datetime.datetime.now()
    return re.sub(r"\$\{now:([^}]*)\}", lambda match: now.strftime(match.group(1)), template)


def fresh_directory(name: str) -> Path:
    """name, or when something is there already (a run of the same model in the same second),
    the first of name-2, name-3, ... that is free."""
    path, number = Path(name), 2
    while path.exists():
        path, number = Path(f"{name}-{number}"), number + 1
    return path


# Lightning's strategies that run one process per device.
MULTI_PROCESS = ("ddp", "fsdp", "deepspeed")


def refuse_several_processes(trainer, args: list[str]) -> None:
    """DDP starts a process per device by running the script again, which a notebook (or a
    Python session) is not: refused in one line naming the command that runs it."""
    from omegaconf import ListConfig

    strategy, devices = str(trainer.get("strategy") or "auto"), trainer.get("devices", 1)
    one_device = devices in (1, "1", "auto", None) or isinstance(devices, ListConfig) and len(devices) == 1
    if any(name in strategy for name in MULTI_PROCESS) or trainer.get("num_nodes", 1) != 1 or not one_device:
        kept = [a for a in args if not a.startswith("hydra.run.dir=")]
        raise UserError(f"DDP runs several processes, which Lightning cannot start from a notebook or a Python "
                        f"session: run it from the command line, python train.py {shlex.join(kept)}")


@dataclass
class Failed:
    error: Exception  # the job's error, returned: Hydra prints a line of its own before raising one


def failure_returned(cfg) -> Failed | float:
    """train.py's task (locked_job), its failure returned as Failed."""
    from shakegpt.training.job import locked_job

    try:
        return locked_job(cfg)
    except Exception as exc:
        return Failed(exc)


def run_in_process(args: list[str]) -> Exception | None:
    """Run train.py's task with these arguments through Hydra, here; its error, or None. The
    logging Hydra sets up for the run (its train.log) and the run's torch threads are undone
    afterwards."""
    from shakegpt.common.hydra_private import run_task

    import torch

    root = logging.getLogger()
    handlers, level, threads = root.handlers[:], root.level, torch.get_num_threads()
    try:
        with train_hydra():
            result = run_task("config", failure_returned, args)
    finally:
        for handler in set(root.handlers) - set(handlers):
            handler.close()
        root.handlers[:], root.level = handlers, level
        torch.set_num_threads(threads)  # the run picked its own, by model size
    return result.error if isinstance(result, Failed) else None


def interrupted(stop: Interrupted, directory: Path, overrides: tuple) -> TrainingInterrupted:
    """What train() raises for a run a signal stopped: where it stopped, and the call that continues it."""
    where = f"after step {stop.step}, last.ckpt written" if stop.step is not None else "before training started"
    call = ", ".join([*map(repr, overrides), f"run_dir={str(directory)!r}", "resume='auto'"])
    run = load_run(directory) if (directory / ".hydra").is_dir() else None
    return TrainingInterrupted(f"stopped by {signal.Signals(stop.signum).name} {where}; continue with shakegpt.train({call})", run)


@contextlib.contextmanager
def one_line_errors():
    """A user's mistake is raised as its UserError alone (one line in a notebook), whatever
    wrapped it (Hydra's instantiate, a config error of Hydra's own); HYDRA_FULL_ERROR=1 keeps the
    whole chain, as on the command line."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except Exception as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        user_error = find_user_error(exc)
        if user_error is None and isinstance(exc, (HydraException, OmegaConfBaseException)):
            text = str(exc).split("Config search path")[0]  # Hydra's list of where it looked: not the user's
            user_error = UserError(" ".join(line.strip() for line in text.splitlines() if line.strip()))
        if user_error is None:
            raise
        raise user_error.with_traceback(None) from None


def run_showing_output(command: list[str]) -> tuple[int, str | None]:
    """(exit code, its last `error:` line) of a command whose output is printed here as it comes;
    the kernel's interrupt passes on to it as Ctrl-C, and its last lines are still shown."""
    # Through a pipe into a cell: the bar prints once per job, not every frame (a Jupyter kernel
    # sets FORCE_COLOR, by which Rich would take the pipe for a terminal).
    env = dict(os.environ, TTY_COMPATIBLE="0")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
    error = None
    try:
        for line in process.stdout:
            print(line, end="", flush=True)
            error = line.removeprefix("error: ").strip() if line.startswith("error: ") else error
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        print(process.stdout.read(), end="")
    return process.wait(), error
