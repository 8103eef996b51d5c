"""shakegpt's Optuna sweeper: `hydra/sweeper=optuna` (conf/hydra/sweeper/optuna.yaml) or a search
space from conf/hparams_search/. A Hydra plugin, so it lives in the hydra_plugins package, where
Hydra looks for them: sweeper.OptunaSweeper is the plugin, _pruning.PruneTrial the Lightning
callback each trial's job gets. Hydra's plugin scan imports every module here except those whose
name starts with _ (so that a command that is not a sweep, sample.py too, never loads Lightning or
Optuna through it)."""
