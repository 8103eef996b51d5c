"""A Hydra sweeper on Optuna's ask-and-tell API (conf/hydra/sweeper/optuna.yaml).

Each batch asks the study for n_jobs trials, launches them as jobs through Hydra's launcher
(job number = trial number, so job directory N holds trial N), and tells the study each job's
result: its best validation loss, PRUNED when the pruner stopped it, FAIL when it failed. With a
storage (sqlite:///study.db) the same command continues the study: only the trials missing to
reach n_trials run, and a trial whose sweep died while it ran runs again. Sweeps on several nodes
may share one study (PostgreSQL, or a journal:/// file on a shared file system): each asks for
trials until the study as a whole has n_trials.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.shakegpt_optuna._optuna_private import running_trial
from hydra_plugins.shakegpt_optuna._shared import study_lock
from hydra_plugins.shakegpt_optuna._space import SearchSpace, as_override, parse_space, stored_params_problem
from hydra_plugins.shakegpt_optuna._study import (
    IN_PROCESS,
    JOB_DIR,
    OWNER,
    best_trial,
    ended,
    masked,
    open_study,
    orphaned,
    quiet_optuna,
    running_trials,
    this_process,
    write_results,
)
from shakegpt.bookkeeping.status import read_status
from shakegpt.common.atomic import write_text
from shakegpt.common.config import check_positive_int
from shakegpt.common.errors import UserError, one_line, report_user_errors
from shakegpt.common.hydra_private import BASIC_LAUNCHER

log = logging.getLogger(__name__)

PRUNING_CALLBACK = "+callbacks.optuna_pruning"  # the override that gives a trial's job PruneTrial


class OptunaSweeper(Sweeper):
    def __init__(self, direction: str, study_name: str, storage: str | None, n_trials: int, n_jobs: int,
                 sampler: DictConfig | None, pruner: DictConfig | None, custom_search_space: str | None,
                 params: DictConfig | None, max_batch_size: int | None = None):
        # max_batch_size: the basic sweeper's setting, left in the node (as null) when
        # hparams_search=<name> puts this sweeper's settings over it (conf/hparams_search/_empty.yaml);
        # a value would do nothing here, so check_settings refuses it.
        self.max_batch_size = max_batch_size
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler_config, self.pruner_config = sampler, pruner
        self.custom_search_space = custom_search_space
        self.params = OmegaConf.to_container(params) if params else {}

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        # Here, not at the top: Hydra's plugin scan imports this module for every command (sample.py
        # too), and pruning's callback brings Lightning.
        from hydra_plugins.shakegpt_optuna._pruning import MarkPruned

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=MarkPruned(task_function)
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    @report_user_errors  # a bad setting, storage or search space: one line, exit 2
    def sweep(self, arguments: list[str]) -> None:
        self.check_settings()
        quiet_optuna()
        space = parse_space(self.params, arguments)
        if not space.distributions and not self.custom_search_space:
            raise UserError("the search space is empty: give hydra.sweeper.params or pick one with hparams_search=<name>")
        self.check_fits([space.probe()])
        # As Hydra's basic sweeper does: the sweep's config, by which resume=auto finds the sweep.
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.sweep_dir / "multirun.yaml", OmegaConf.to_yaml(self.config))
        study = open_study(self.study_name, self.storage, self.direction, self.build("sampler"), self.build("pruner"))
        IN_PROCESS[self.study_name] = study
        try:
            self.run_trials(study, space)
        finally:
            IN_PROCESS.pop(self.study_name, None)
            if study.get_trials(deepcopy=False):
                self.report_best(study)

    def check_settings(self) -> None:
        check_positive_int("hydra.sweeper.n_trials", self.n_trials)
        check_positive_int("hydra.sweeper.n_jobs", self.n_jobs)
        if self.max_batch_size is not None:
            raise UserError("hydra.sweeper.max_batch_size is the basic sweeper's setting; the Optuna sweeper "
                            "launches hydra.sweeper.n_jobs trials at a time")
        if self.direction not in ("minimize", "maximize"):
            raise UserError(f"hydra.sweeper.direction must be minimize or maximize, got {self.direction}")
        if not self.study_name:
            raise UserError("hydra.sweeper.study_name must be set")
        if self.custom_search_space:
            self.extend_space = find_function("hydra.sweeper.custom_search_space", self.custom_search_space)
        if self.storage is None and self.config.get("resume") == "auto":
            raise UserError("resume=auto continues an Optuna study only from a storage, e.g. "
                            "hydra.sweeper.storage=sqlite:///study.db; an in-memory one is gone with its process")

    def build(self, what: str):
        """The sampler or pruner its config names (None for a pruner set to null)."""
        config = self.sampler_config if what == "sampler" else self.pruner_config
        if not config:
            return None
        try:
            return instantiate(config)
        except Exception as exc:
            raise UserError(f"hydra.sweeper.{what}: cannot build {config.get('_target_')}: {root_cause(exc)}") from None

    def run_trials(self, study, space: SearchSpace) -> None:
        """Batches of trials until the study has its n_trials, counting the trials of any other
        sweep that shares the study (another node's)."""
        done, running = ended(study), len(running_trials(study))
        note = " (raise hydra.sweeper.n_trials to run more)" if done >= self.n_trials else ""
        log.info("Optuna study %r (%s): %d trial(s) ended, %d running, n_trials=%d%s",
                 self.study_name, masked(self.storage) or "in memory", done, running, self.n_trials, note)
        pruning = self.pruning_reaches_jobs()
        while trials := self.next_trials(study, space):
            self.launch(study, trials, space, pruning)
        if others := running_trials(study):
            log.info("the study has its n_trials; %d trial(s) still run in other sweeps: %s", len(others),
                     ", ".join(f"{t.number} ({t.user_attrs.get(OWNER, 'owner unknown')})" for t in others[:5]))

    def next_trials(self, study, space: SearchSpace) -> list:
        """Up to n_jobs trials to run next, those a stopped sweep left running first, and no more
        than the study lacks: its ended trials and those running (here or in a live sweep
        elsewhere) count. Counted and asked under the study's lock, so that sweeps sharing the
        study never both take its last place, nor both rerun one orphaned trial."""
        with study_lock(self.storage, self.study_name):
            running = running_trials(study)
            stopped = orphaned(running)
            waiting = self.rerunnable(study, stopped, space)  # marks the others failed: they are ended now
            room = self.n_trials - ended(study) - (len(running) - len(stopped))
            count = max(0, min(self.n_jobs, room))
            return [self.resume_trial(study, waiting.pop(0)) if waiting else self.new_trial(study, space)
                    for _ in range(count)]

    def new_trial(self, study, space: SearchSpace):
        try:
            trial = study.ask(space.distributions)
        except ValueError as exc:  # Optuna: a parameter stored with another kind of distribution
            raise UserError(
                f"Optuna study {self.study_name!r} holds trials of another search space ({one_line(exc)}); "
                "give this search a new hydra.sweeper.study_name"
            ) from None
        if self.custom_search_space:
            self.extend_space(self.config, trial)
        trial.set_user_attr(OWNER, this_process())
        return trial

    def rerunnable(self, study, trials: list, space: SearchSpace) -> list:
        """Of the trials a stopped sweep left running, those whose stored parameters are a point
        of this search space; the others are marked failed, never run (their parameters would
        become this sweep's overrides)."""
        from optuna.trial import TrialState

        kept = []
        for frozen in trials:
            problem = stored_params_problem(frozen.params, self.space_of(frozen.params, space))
            if problem is None:
                kept.append(frozen)
                continue
            study.tell(frozen.number, state=TrialState.FAIL)
            log.warning("trial %d is not run again: %s; it is marked failed", frozen.number, problem)
        return kept

    def space_of(self, params: dict, space: SearchSpace) -> dict:
        """The distributions params must come from: the typed space, and what the custom search
        space function suggests for them (asked through a FixedTrial, which runs nothing)."""
        import optuna

        distributions = dict(space.distributions)
        if self.custom_search_space:
            fixed = optuna.trial.FixedTrial(params)
            with contextlib.suppress(ValueError):  # it asks for a parameter the trial lacks: no match
                self.extend_space(self.config, fixed)
            distributions |= fixed.distributions
        return distributions

    def resume_trial(self, study, frozen):
        """A trial left running by a sweep that stopped: the same trial, run again (from its
        last.ckpt when the sweep directory is the same one and resume=auto says so)."""
        trial = running_trial(study, frozen)
        trial.set_user_attr(OWNER, this_process())
        log.info("trial %d: its sweep stopped while it ran; running it again", frozen.number)
        return trial

    def overrides(self, trial, space: SearchSpace, pruning: bool) -> list[str]:
        lines = list(space.fixed.values()) + [as_override(name, value) for name, value in trial.params.items()]
        if pruning:
            target = "hydra_plugins.shakegpt_optuna._pruning.PruneTrial"
            lines.append(f"{PRUNING_CALLBACK}={{_target_:{target},trial:{trial.number}}}")
        return lines

    def launch(self, study, trials, space: SearchSpace, pruning: bool) -> None:
        """Run the trials as jobs numbered by trial (in runs of consecutive numbers: another
        process may share the study) and tell the study how each ended."""
        from optuna.trial import TrialState

        batch = [self.overrides(trial, space, pruning) for trial in trials]
        try:
            self.check_fits(batch)
        except UserError:
            for trial in trials:
                study.tell(trial, state=TrialState.FAIL)
            raise
        start = 0
        for end in range(1, len(trials) + 1):
            if end == len(trials) or trials[end].number != trials[end - 1].number + 1:
                returns = self.launcher.launch(batch[start:end], initial_job_idx=trials[start].number)
                for trial, result in zip(trials[start:end], returns):
                    self.tell(study, trial, result)
                start = end

    def check_fits(self, batch: list[list[str]]) -> None:
        """Each job's overrides compose with the config (a key the model lacks, say)."""
        try:
            self.validate_batch_is_legal(batch)
        except HydraException as exc:
            raise UserError(f"the search space does not fit the config: {str(exc).splitlines()[0]}") from None

    def tell(self, study, trial, result) -> None:
        from optuna.trial import TrialState

        job_dir = Path(result.hydra_cfg.hydra.runtime.output_dir)
        trial.set_user_attr(JOB_DIR, str(job_dir))
        value = result.return_value if result.status.name == "COMPLETED" else None
        if read_status(job_dir).get("state") == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
            outcome = "pruned"
        elif not isinstance(value, (int, float)) or not math.isfinite(value):
            study.tell(trial, state=TrialState.FAIL)
            outcome = "failed"
        else:
            study.tell(trial, value)
            outcome = f"{value:.4f}"
        best = best_trial(study)
        log.info("trial %d: %s (best so far %s)", trial.number, outcome,
                 f"{best.value:.4f}, trial {best.number}" if best else "none")

    def pruning_reaches_jobs(self) -> bool:
        """Whether trials can be pruned: a pruner is set, and the jobs can reach the study (its
        storage, or this very process for the basic launcher)."""
        if not self.pruner_config:
            return False
        launcher = self.config.hydra.launcher.get("_target_")
        if self.storage is None and launcher != BASIC_LAUNCHER:
            log.warning("pruning is off: hydra/launcher=%s runs trials in other processes, which an in-memory study cannot "
                        "reach; give it a storage (hydra.sweeper.storage=sqlite:///study.db)",
                        self.config.hydra.runtime.choices.get("hydra/launcher"))
            return False
        return True

    def report_best(self, study) -> None:
        results = write_results(study, self.sweep_dir, self.storage, self.n_trials)
        if results["best_trial"] is None:
            log.info("no trial of study %r has completed", self.study_name)
            return
        params = " ".join(as_override(k, v) for k, v in results["best_params"].items())
        log.info("best trial: %d, value %.4f: %s", results["best_trial"], results["best_value"], params)


def find_function(setting: str, path: str):
    """The function a dotted path names (Hydra's own lookup logs an error of its own first)."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UserError(f"{setting}: cannot find {path}: {one_line(exc)}") from None


def root_cause(exc: BaseException) -> str:
    """The first error in a chain (Hydra's instantiate wraps it in messages of its own)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return one_line(exc)
