"""Pruning: a trial's job reports its validation loss to the study at each evaluation and stops
early when the study's pruner says the trial is unpromising.

optuna-integration's PyTorchLightningPruningCallback reports at `current_epoch`, which is 0 for
the whole of a shakegpt run (one endless epoch of random batches): every evaluation after the
first would be ignored. This one reports at the training step. A pruned job stops like a run
that reached its end (checkpoints, metrics.json with the losses it reached) and its status.json
says `pruned`; the sweeper then tells the study TrialState.PRUNED.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from hydra_plugins.shakegpt_optuna._optuna_private import running_trial
from hydra_plugins.shakegpt_optuna._study import IN_PROCESS, open_study, quiet_optuna
from shakegpt.bookkeeping.status import read_status, write_status
from shakegpt.common.errors import UserError

log = logging.getLogger(__name__)

# Trials whose job this process stopped: trial number -> the reason status.json gives.
PRUNED: dict[int, str] = {}


class PruneTrial(L.Callback):
    """Added to each trial's job by the Optuna sweeper (+callbacks.optuna_pruning.trial=<n>)."""

    def __init__(self, trial: int, monitor: str = "val/loss"):
        self.number, self.monitor = trial, monitor
        self.trial = None
        self.reported: set[int] = set()

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        prune = trainer.is_global_zero and self.report(trainer.global_step, trainer.callback_metrics.get(self.monitor))
        if trainer.strategy.broadcast(prune):  # every DDP process stops at the same step
            trainer.should_stop = True

    def report(self, step: int, value) -> bool:
        """Report the value at this step; True when the pruner says stop."""
        if value is None:
            return False
        if self.trial is None:
            self.trial, self.reported = find_trial(self.number)
        if step not in self.reported:  # a trial run again from the start repeats its steps
            self.trial.report(float(value), step)
            self.reported.add(step)
        if not self.trial.should_prune():
            return False
        PRUNED[self.number] = f"at step {step}, {self.monitor} {float(value):.4f}"
        log.info("trial %d pruned %s", self.number, PRUNED[self.number])
        return True


def find_trial(number: int):
    """(the running trial of this sweep's study with this number, the steps it reported)."""
    settings = HydraConfig.get().sweeper
    if "study_name" not in settings:
        raise UserError("PruneTrial (callbacks.optuna_pruning) works only in a trial of an Optuna sweep (hydra/sweeper=optuna)")
    study = IN_PROCESS.get(settings.study_name)  # the sweeper's own study when the job runs in its process
    if study is None:
        quiet_optuna()
        pruner = instantiate(settings.pruner) if settings.pruner else None
        study = open_study(settings.study_name, settings.storage, settings.direction, pruner=pruner, create=False)
    frozen = study.get_trials(deepcopy=False)[number]
    return running_trial(study, frozen), set(frozen.intermediate_values)


class MarkPruned:
    """The task a trial's job runs: train.py's own, then status `pruned` when PruneTrial
    stopped it (the job itself ends as a run that finished)."""

    def __init__(self, task_function):
        self.task_function = task_function

    def __call__(self, cfg):
        value = self.task_function(cfg)
        number = (cfg.get("callbacks") or {}).get("optuna_pruning", {}).get("trial")
        reason = PRUNED.pop(number, None)
        out = Path(HydraConfig.get().runtime.output_dir)
        if reason is not None and read_status(out).get("state") == "finished":
            write_status(out, "pruned", reason=reason)
        return value
