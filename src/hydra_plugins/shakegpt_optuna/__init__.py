"""shakegpt's Optuna sweeper: `hydra/sweeper=optuna` (conf/hydra/sweeper/optuna.yaml) or a search
space from conf/hparams_search/. A Hydra plugin, so it lives in the hydra_plugins package, where
Hydra looks for them: sweeper.OptunaSweeper is the plugin, pruning.PruneTrial the Lightning
callback each trial's job gets. Hydra's plugin scan imports every module here except those whose
name starts with _."""
