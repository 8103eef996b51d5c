"""Every private part of Lightning that shakegpt touches, in this one module.

Each function says which private thing it uses and why no public API does the job.
tests/test_private_hooks.py checks that each one is still there and still behaves as used here,
so a Lightning upgrade that changes one fails that test by name rather than a run obscurely.

- trainer._checkpoint_connector.dump_checkpoint: interrupts.StopOnSignal's last.ckpt. The public
  Trainer.save_checkpoint ends in a barrier.
- trainer._signal_connector.received_sigterm, written: interrupts.StopOnSignal. The public
  Trainer.received_sigterm only reads it.
- RichProgressBar._get_train_description and _init_progress, overridden: callbacks.StepProgressBar.
  No setting names the training bar, and no public hook follows each (re)start of the bar.
- lightning.pytorch.strategies.launchers.subprocess_script._hydra_subprocess_cmd, replaced:
  distributed. Lightning offers no setting for the command of the DDP processes it starts.

Replaced by public APIs: the bar's console is its public progress.console (was _console);
trainer.strategy.launcher.kill was public already.
"""

from __future__ import annotations

from typing import Callable

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.strategies.launchers import subprocess_script


def checkpoint_state(trainer: L.Trainer) -> dict:
    """The whole checkpoint dict Trainer.save_checkpoint would write. Private: the public
    save_checkpoint ends in a barrier, which a DDP rank that stopped a step later never reaches."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=False)


def set_received_sigterm(trainer: L.Trainer, value: bool) -> None:
    """Raise or lower the flag on which Lightning stops at the next step or evaluation batch
    (by raising SIGTERMException). Private: the public Trainer.received_sigterm only reads it."""
    trainer._signal_connector.received_sigterm = value


def set_ddp_child_command(command: Callable[[int], tuple[list[str], str]]) -> None:
    """command(local_rank) -> (argv, cwd): how Lightning starts the DDP process of each further
    rank under Hydra. Private: Lightning builds that command in this module-level function and
    offers no setting for it."""
    subprocess_script._hydra_subprocess_cmd = command


class RichProgressBarHooks(RichProgressBar):
    """Lightning's Rich bar with the two hooks it lacks publicly: the training bar's label, and
    a call each time the bar (re)starts on Rich's console."""

    def train_description(self) -> str | None:
        """The training bar's label; None: Lightning's own ('Epoch N/M')."""
        return None

    def on_progress_start(self, console) -> None:
        """Called each time Lightning (re)creates the bar, on the Rich console it draws on
        (Lightning reconfigures that console each time)."""

    def _get_train_description(self, current_epoch: int) -> str:
        # Private: Lightning labels the bar here, from two call sites, with no setting.
        return self.train_description() or super()._get_train_description(current_epoch)

    def _init_progress(self, trainer) -> None:
        # Private: the one place every (re)start of the bar goes through (six public hooks
        # call it, one of them only sometimes).
        super()._init_progress(trainer)
        if self.progress is not None:
            self.on_progress_start(self.progress.console)
