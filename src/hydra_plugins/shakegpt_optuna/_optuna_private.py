"""Every private part of Optuna that shakegpt touches, in this one module.

tests/test_private_hooks.py checks that it is still there and still behaves as used here, so
an Optuna upgrade that changes it fails that test by name rather than a sweep obscurely.

- FrozenTrial._trial_id, passed to optuna.trial.Trial(study, trial_id) (a constructor Optuna
  documents but advises against): sweeper.OptunaSweeper.resume_trial and pruning.find_trial.
  study.ask() only makes new trials, and nothing public gives the Trial of a stored one.

Optuna is imported inside the function, as elsewhere in this package (Hydra imports the
plugin modules at every start of train.py).
"""

from __future__ import annotations


def running_trial(study, frozen):
    """The live Trial (report, should_prune, set_user_attr) of a trial the study already holds,
    from its FrozenTrial: a trial a stopped sweep left running, or the one a job reports to.
    Private: FrozenTrial keeps the storage's id only as _trial_id, and Optuna makes a Trial from a
    number nowhere in its public API (study.tell alone takes one)."""
    import optuna

    return optuna.trial.Trial(study, frozen._trial_id)
