"""Every private part of Hydra that shakegpt touches, in this one module.

tests/test_private_hooks.py checks that each is still there and still behaves as used here, so
a Hydra upgrade that changes one fails that test by name rather than a sweep obscurely.

- hydra._internal.core_plugins.basic_sweeper.BasicSweeper (setup() keeps the launcher as
  .launcher, sweep() launches through it): the base of hydra_plugins.shakegpt_sweeper's
  ResumableSweeper. No public API: Hydra exports no sweeper of its own to build on.
- hydra._internal.core_plugins.basic_launcher.BasicLauncher, as the _target_ string of
  hydra/launcher=basic: the Optuna sweeper's test for jobs that run in its own process. No
  public API: Hydra says of no launcher where its jobs run.
- hydra._internal.hydra.Hydra.run, on the instance hydra.initialize_config_dir sets up (as
  GlobalHydra's .hydra): shakegpt.train's run, in the caller's process. No public API runs a task
  as @hydra.main does (run directory, .hydra/ files, logging, callbacks, HydraConfig) without
  reading sys.argv and exiting the process on an error; compose() alone sets no HydraConfig.
"""

from __future__ import annotations

# hydra/launcher=basic's _target_: the launcher that runs each job in the sweep's own process.
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def basic_sweeper() -> type:
    """Hydra's basic sweeper class, to subclass. Looked up when called, not bound at import:
    Hydra's plugin scan runs that module again, and the class's __init__ names the module's
    newest class (super(BasicSweeper, self)), of which an older binding's instances are not."""
    from hydra._internal.core_plugins import basic_sweeper as module

    return module.BasicSweeper


def run_task(config_name: str, task_function, overrides: list[str]):
    """task_function's return value, run as @hydra.main runs it in run mode (one job, in this
    process) with these overrides instead of sys.argv, within hydra.initialize_config_dir; an
    exception of the task is raised as it is."""
    from hydra.core.global_hydra import GlobalHydra

    return GlobalHydra.instance().hydra.run(config_name, task_function, overrides).return_value
