"""Ctrl-C (SIGINT) and SIGTERM (what `kill` and SLURM send before preemption) stop a run with
a checkpoint at the step reached, so `resume=auto` loses nothing.

During fit the signal only raises Lightning's own SIGTERM flag: Lightning then stops at the end
of the current training step (or evaluation batch) by raising SIGTERMException, every DDP rank at
the same step, and StopOnSignal writes last.ckpt from its on_exception hook. Before and after fit
(startup, the range test) a signal stops at once with Interrupted. Under SLURM the requeue
signal (SIGUSR1, or submitit's) stops the run the same way, and the job is requeued (slurm.py).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from shakegpt.bookkeeping.status import write_status
from shakegpt.common.errors import UserError
from shakegpt.training import slurm
from shakegpt.training.lightning_private import checkpoint_state, set_received_sigterm


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGINT and SIGTERM, and under SLURM the signals that requeue the job."""
    return (signal.SIGINT, signal.SIGTERM, *slurm.requeue_signals())


class Interrupted(BaseException):
    """A run stopped by a signal. A BaseException, like KeyboardInterrupt: no `except Exception`
    on the way out (a sweep's failed-job handling, Hydra's job runner) may swallow it."""

    def __init__(self, signum: int, step: int | None = None, checkpoint: Path | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class Received:
    signum: int | None = None


@contextlib.contextmanager
def signals_interrupt():
    """Within the block, SIGINT and SIGTERM raise Interrupted (SIGTERM would otherwise kill the
    process without a word, SIGINT print a traceback). Raised in the middle of library code, it
    can leave that code to fail with an error of its own: the yielded Received names the signal
    that came, so the caller can tell such an error from a real failure."""
    received = Received()

    def handler(signum, frame):
        received.signum = signum
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {signum: signal.signal(signum, handler) for signum in stop_signals()}
    try:
        yield received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def as_interrupt(exc: BaseException, received: Received | None) -> Interrupted | None:
    """exc as the interruption it is: Interrupted itself, or an error of a library that the
    signal broke off mid-call; None for a real failure."""
    if isinstance(exc, Interrupted):
        return exc
    if received is not None and received.signum is not None:
        return Interrupted(received.signum)
    return None


class StopOnSignal(L.Callback):
    """A signal during fit stops training after the current step with last.ckpt written there.
    An evaluation in progress or about to start at this step finishes first, so its point on the
    curve and best.ckpt are not lost; a second signal stops at once."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = Path(checkpoint)
        self.signum: int | None = None  # the first signal received
        self.forced = False  # a second signal: do not wait for the evaluation
        self.saved_step: int | None = None
        self.trainer: L.Trainer | None = None
        self.evaluating = False  # from an evaluation's start to this callback's end of it

    def on_train_start(self, trainer, pl_module):
        # After Lightning registered its own SIGTERM handler (which broadcasts to DDP ranks from
        # inside the handler, where it can deadlock): this one replaces it, and Lightning restores
        # the handlers it found when fit ends, so these last exactly as long as training.
        self.trainer = trainer
        if threading.current_thread() is threading.main_thread():
            for signum in stop_signals():
                signal.signal(signum, self.request_stop)

    def request_stop(self, signum, frame):
        trainer = self.trainer
        self.forced = self.signum is not None
        if self.forced:
            set_received_sigterm(trainer, True)
            return
        self.signum = signum
        # During an evaluation, its end (on_validation_end below) stops the run; after that end (the
        # text sample, which checks stop_requested), Lightning's flag stops it at the next step.
        set_received_sigterm(trainer, not self.evaluating)
        if trainer.is_global_zero:
            after = "the evaluation in progress (again to stop now)" if self.evaluating else "this step"
            print(f"\n{signal.Signals(signum).name}: stopping after {after}, with a checkpoint", file=sys.stderr)
        launcher = trainer.strategy.launcher
        if launcher is not None:
            launcher.kill(signum)  # rank 0 passes it to the DDP processes it started

    def on_validation_start(self, trainer, pl_module):
        self.evaluating = True
        if self.signum is not None and not self.forced:
            set_received_sigterm(trainer, False)  # let the evaluation of this step run to its end

    def on_validation_end(self, trainer, pl_module):
        self.evaluating = False
        if self.signum is None:
            return
        if not trainer.sanity_checking:
            # Saved here, where Lightning's own end-of-evaluation checkpoints are: a resumed run
            # then neither repeats nor skips this evaluation's bookkeeping.
            self.save(trainer)
        set_received_sigterm(trainer, True)

    def on_exception(self, trainer, pl_module, exception):
        if self.signum is not None and isinstance(exception, SIGTERMException) and self.saved_step != trainer.global_step:
            self.save(trainer)

    def save(self, trainer) -> None:
        # Not trainer.save_checkpoint: it ends in a barrier, which a DDP rank that stopped a step
        # later would never reach. The state is the same on every rank; the strategy writes once.
        trainer.strategy.save_checkpoint(checkpoint_state(trainer), self.checkpoint)
        self.saved_step = trainer.global_step


def stop_requested(trainer: L.Trainer) -> bool:
    """Whether a signal asked the run to stop: long work in a callback (the text sample at
    evaluations) checks it as it goes, so that a signal is answered within a moment."""
    return any(isinstance(c, StopOnSignal) and c.signum is not None for c in trainer.callbacks)


def record_interrupt(stop: Interrupted, run_dir: Path, command: str) -> None:
    """status.json says interrupted at which step (under SLURM, after the requeue signal:
    requeued, and the job asks to run again); one line says how the run continues."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    name = signal.Signals(stop.signum).name
    where = f"at step {stop.step}, checkpoint {stop.checkpoint}" if stop.step is not None else "before training started"
    if stop.signum in slurm.requeue_signals():
        why_not = requeue(stop, run_dir)
        if why_not is None:
            if rank_zero_only.rank == 0:
                print(f"requeued by {name} {where}; SLURM job {slurm.job_id()} runs again and continues from it", file=sys.stderr)
            return
        print(f"warning: {why_not}", file=sys.stderr)
    with contextlib.suppress(UserError, OSError):  # a full disk may be why the user pressed Ctrl-C
        write_status(run_dir, "interrupted", steps=stop.step, signal=name)
    if rank_zero_only.rank == 0:
        print(f"interrupted by {name} {where}; continue with: {command}", file=sys.stderr)


def requeue(stop: Interrupted, run_dir: Path) -> str | None:
    """Under SLURM: status.json says requeued, and global rank 0 asks SLURM to run the job
    again. None once asked (or on other ranks), else why it could not be."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if threading.current_thread() is threading.main_thread():
        # SLURM ends a requeued job with SIGTERM: by then the checkpoint is written and this
        # process is on its way out, which that signal would only turn into a second story.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if rank_zero_only.rank != 0:
        return None
    with contextlib.suppress(UserError, OSError):
        write_status(run_dir, "requeued", steps=stop.step, signal=signal.Signals(stop.signum).name, job=slurm.job_id())
    return slurm.request_requeue()
