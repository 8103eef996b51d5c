"""The private parts of Lightning, PyTorch, Hydra and Optuna that shakegpt touches, one check
each: still there, and still doing what the one module that uses it relies on
(shakegpt.training.lightning_private, shakegpt.training.torch_private,
shakegpt.common.hydra_private, hydra_plugins.shakegpt_optuna._optuna_private). After an upgrade
a failure here names the private thing that changed; fix that module, nothing else."""

import inspect
import subprocess
import sys
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf

from shakegpt.training import lightning_private, torch_private


def require(owner, name: str, parameters: list[str] | None = None) -> None:
    """owner.name exists (with these parameters after self, when given), or a message naming it."""
    where = getattr(owner, "__name__", type(owner).__name__)
    assert hasattr(owner, name), f"{where}.{name} is gone: the library changed what shakegpt's private-hooks module relies on"
    if parameters is not None:
        found = [p for p in inspect.signature(getattr(owner, name)).parameters if p != "self"]
        assert found[: len(parameters)] == parameters, f"{where}.{name} now takes {found}, not {parameters}"


def tiny_trainer(*callbacks, progress_bar: bool = False) -> L.Trainer:
    return L.Trainer(max_steps=4, limit_val_batches=0, logger=False, enable_checkpointing=False, accelerator="cpu",
                     enable_progress_bar=progress_bar, enable_model_summary=False, callbacks=list(callbacks))


# Lightning


def test_lightning_dumps_the_whole_checkpoint_without_a_barrier():
    require(L.Trainer(logger=False)._checkpoint_connector, "dump_checkpoint", ["weights_only"])
    trainer = tiny_trainer()
    trainer.fit(BoringModel())
    state = lightning_private.checkpoint_state(trainer)
    assert {"state_dict", "optimizer_states", "loops", "callbacks"} <= state.keys()
    assert state["global_step"] == 4


class RaiseTheFlagAt(L.Callback):
    def __init__(self, step: int):
        self.step, self.seen = step, []

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            lightning_private.set_received_sigterm(trainer, True)
        self.seen.append(trainer.received_sigterm)


def test_lightning_stops_after_the_step_that_raised_its_sigterm_flag():
    require(L.Trainer(logger=False)._signal_connector, "received_sigterm")
    flag = RaiseTheFlagAt(step=2)
    trainer = tiny_trainer(flag)
    with pytest.raises(SIGTERMException):
        trainer.fit(BoringModel())
    assert trainer.global_step == 2 and flag.seen == [False, True]
    lightning_private.set_received_sigterm(trainer, False)
    assert trainer.received_sigterm is False


def test_lightning_builds_the_ddp_child_command_through_one_module_level_function(monkeypatch):
    from lightning.pytorch.strategies.launchers import subprocess_script

    require(subprocess_script, "_hydra_subprocess_cmd", ["local_rank"])
    callers = [f for _, f in inspect.getmembers(subprocess_script._SubprocessScriptLauncher, inspect.isfunction)
               if "_hydra_subprocess_cmd" in f.__code__.co_names]
    assert callers, "_SubprocessScriptLauncher no longer calls subprocess_script._hydra_subprocess_cmd by name"
    monkeypatch.setattr(subprocess_script, "_hydra_subprocess_cmd", subprocess_script._hydra_subprocess_cmd)
    command = lambda local_rank: ([], "")  # noqa: E731
    lightning_private.set_ddp_child_command(command)
    assert subprocess_script._hydra_subprocess_cmd is command


class LabelledBar(lightning_private.RichProgressBarHooks):
    def __init__(self):
        super().__init__()
        self.consoles, self.labels = [], []

    def train_description(self):
        return "train"

    def on_progress_start(self, console):
        self.consoles.append(console)

    def on_train_batch_end(self, trainer, *args):
        super().on_train_batch_end(trainer, *args)
        self.labels.append(self.train_progress_bar.description)


def test_lightning_s_rich_bar_takes_its_label_and_reports_each_start():
    import rich

    require(RichProgressBar, "_get_train_description", ["current_epoch"])
    require(RichProgressBar, "_init_progress", ["trainer"])
    bar = LabelledBar()
    tiny_trainer(bar, progress_bar=True).fit(BoringModel())
    assert set(bar.labels) == {"train"}
    assert bar.consoles and all(console is rich.get_console() for console in bar.consoles)


# PyTorch


def test_torch_s_muon_orthogonalises_through_one_module_level_function():
    import torch.optim._muon as torch_muon

    require(torch_muon, "_zeropower_via_newtonschulz", ["grad", "ns_coefficients", "ns_steps", "eps"])
    shapes = []

    def spy(grad, *args):
        shapes.append(tuple(grad.shape))
        return torch_private.muon_newton_schulz(grad, *args)

    weight = torch.nn.Parameter(torch.randn(6, 4))
    weight.grad = torch.randn(6, 4)
    with torch_private.muon_orthogonalises_with(spy):
        torch.optim.Muon([weight]).step()
    assert shapes == [(6, 4)], "torch.optim.Muon.step no longer calls torch.optim._muon._zeropower_via_newtonschulz"
    assert torch_muon._zeropower_via_newtonschulz is torch_private.muon_newton_schulz


# Hydra


class RecordingLauncher:
    def __init__(self):
        self.calls = []

    def launch(self, job_overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        self.calls.append(([list(o) for o in job_overrides], initial_job_idx))
        return [JobReturn(status=JobStatus.COMPLETED, _return_value=0) for _ in job_overrides]


def test_hydra_s_basic_sweeper_launches_through_the_launcher_setup_gives_it(tmp_path, monkeypatch):
    from hydra.core.plugins import Plugins

    from shakegpt.common.hydra_private import basic_sweeper

    launcher = RecordingLauncher()
    monkeypatch.setattr(Plugins.instance(), "instantiate_launcher", lambda **kwargs: launcher)
    loader = SimpleNamespace(load_sweep_config=lambda **kwargs: kwargs["master_config"])
    sweeper = basic_sweeper()(max_batch_size=None)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    sweeper.setup(hydra_context=SimpleNamespace(config_loader=loader), task_function=None, config=config)
    assert sweeper.launcher is launcher, "BasicSweeper.setup no longer keeps its launcher as .launcher"
    sweeper.launcher = wrapped = RecordingLauncher()  # as ResumableSweeper wraps it
    sweeper.sweep(["a=1,2"])
    assert wrapped.calls == [([["a=1"], ["a=2"]], 0)], "BasicSweeper.sweep no longer launches through self.launcher"


@pytest.mark.slow
def test_the_resumable_sweeper_imported_before_hydra_s_plugin_scan_still_builds():
    # The scan runs BasicSweeper's module again: a subclass of the class bound before it fails
    # in BasicSweeper.__init__ (a process of its own: the scan runs once per process).
    script = (
        "import hydra_plugins.shakegpt_sweeper\n"
        "from hydra.core.plugins import Plugins\n"
        "Plugins.instance()\n"
        "import hydra_plugins.shakegpt_sweeper as plugin\n"
        "plugin.ResumableSweeper(max_batch_size=None)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_hydra_s_basic_launcher_is_the_default_one_under_its_private_name():
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class

    from shakegpt.common.hydra_private import BASIC_LAUNCHER
    from tests.helpers import ROOT

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        config = compose("config", ["hydra/launcher=basic"], return_hydra_config=True)
    assert config.hydra.launcher._target_ == BASIC_LAUNCHER, f"hydra/launcher=basic is now {config.hydra.launcher._target_}"
    assert get_class(BASIC_LAUNCHER).__name__ == "BasicLauncher"


def test_hydra_s_run_runs_a_task_as_hydra_main_does(tmp_path):
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from shakegpt.common.hydra_private import run_task
    from tests.helpers import ROOT

    def task(cfg):
        if cfg.seed == 1:
            raise ValueError("the task's own error")
        return HydraConfig.get().runtime.output_dir, HydraConfig.get().job.name, cfg.model._target_

    with initialize_config_dir(config_dir=str(ROOT / "conf"), job_name="train", version_base="1.3"):
        found = run_task("config", task, ["model=v2", f"hydra.run.dir={tmp_path / 'run'}", "hydra/job_logging=disabled"])
        with pytest.raises(ValueError, match="the task's own error"):
            run_task("config", task, ["seed=1", f"hydra.run.dir={tmp_path / 'failed'}", "hydra/job_logging=disabled"])
    assert found == (str(tmp_path / "run"), "train", "shakegpt.models.v2.V2")
    assert {p.name for p in (tmp_path / "run" / ".hydra").iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}


# Optuna


def test_optuna_makes_the_live_trial_of_a_stored_one():
    import optuna

    from hydra_plugins.shakegpt_optuna._optuna_private import running_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="another").ask()  # so that trial id 1 is number 0
    study = optuna.create_study(storage=storage, study_name="this")
    study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    require(frozen, "_trial_id")
    require(optuna.trial.Trial, "__init__", ["study", "trial_id"])
    trial = running_trial(study, frozen)
    trial.report(0.5, 3)
    trial.set_user_attr("owner", "here")
    assert trial.number == frozen.number and not trial.should_prune()
    stored = study.get_trials(deepcopy=False)[0]
    assert stored.intermediate_values == {3: 0.5} and stored.user_attrs == {"owner": "here"}
