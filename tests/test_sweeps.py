"""Multirun sweeps: summaries, failing jobs, launchers and the Optuna sweeper."""

import csv
import json
import math
import socket
import subprocess

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hydra_plugins.shakegpt_optuna._space import parse_space
from tests.helpers import ROOT, TINY, run_cli, run_script


def sweep(tmp_path, *overrides):
    result = run_script("train.py", "-m", f"hydra.sweep.dir={tmp_path}", *TINY, *overrides)
    return result


def summary_rows(sweep_dir):
    with open(sweep_dir / "summary.csv") as f:
        return {row["job"]: row for row in csv.DictReader(f)}


def test_two_by_two_sweep_summary_matches_the_jobs_logs(tmp_path):
    result = sweep(tmp_path, "model=bigram", "trainer.max_steps=10,20", "data.block_size=4,8")
    assert result.returncode == 0, result.stderr
    rows = summary_rows(tmp_path)
    assert sorted(rows) == ["0", "1", "2", "3"]
    for job, row in rows.items():
        metrics = json.loads((tmp_path / job / "metrics.json").read_text())
        assert row["status"] == "finished"
        assert int(row["steps"]) == metrics["steps"]
        assert float(row["final_val_loss"]) == pytest.approx(metrics["final_val_loss"], abs=1e-6)
        assert float(row["final_train_loss"]) == pytest.approx(metrics["final_train_loss"], abs=1e-6)
        assert float(row["best_val_loss"]) == pytest.approx(metrics["best_val_loss"], abs=1e-6)
        assert int(row["parameters"]) == metrics["parameters"]
        assert int(row["tokens"]) == metrics["tokens"]
    summary = (tmp_path / "summary.md").read_text()
    assert "trainer.max_steps=20 data.block_size=8" in summary and "## Samples" in summary
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path):
    result = sweep(tmp_path, "model=v6", "model.n_head=5,4")
    assert result.returncode == 0, result.stderr
    rows = summary_rows(tmp_path)
    assert rows["0"]["status"] == "failed: model.n_embd=32 must be divisible by model.n_head=5"
    assert rows["1"]["status"] == "finished"
    assert not (tmp_path / "0" / "checkpoints").exists()
    assert (tmp_path / "1" / "checkpoints" / "best.ckpt").is_file()


def test_a_sweep_whose_every_job_fails_exits_nonzero(tmp_path):
    result = sweep(tmp_path, "model=v6", "model.n_head=5,7")
    assert result.returncode == 1
    assert "every job of the sweep failed" in result.stderr
    assert all(row["status"].startswith("failed") for row in summary_rows(tmp_path).values())


@pytest.mark.slow
def test_the_joblib_launcher_runs_a_two_job_sweep(tmp_path):
    result = sweep(tmp_path, "model=bigram", "data.block_size=4,8", "hydra/launcher=joblib")
    assert result.returncode == 0, result.stderr
    rows = summary_rows(tmp_path)
    assert [rows[j]["status"] for j in ("0", "1")] == ["finished", "finished"]


def submitted_jobs(sweep_dir):
    """The jobs submitit pickled for this sweep (what a SLURM node unpickles and runs): by job
    number, the model.n_head each was submitted with."""
    import pickle

    jobs = {}
    for path in sweep_dir.glob(".submitit/*/*_submitted.pkl"):
        with path.open("rb") as f:
            delayed = pickle.load(f)
        overrides, _, job_num = delayed.args[:3]
        jobs.setdefault(job_num, []).append(next(o for o in overrides if o.startswith("model.n_head=")))
    return jobs


@pytest.mark.slow
def test_the_submitit_launcher_runs_a_sweep_in_job_processes_and_resumes_it(tmp_path):
    # hydra/launcher=submitit_local is the submitit code that submits SLURM jobs (hydra/launcher=slurm),
    # each job pickled, unpickled and run in a process of its own; here on this machine.
    args = ["model=v6", "model.n_head=5,4", "hydra/launcher=submitit_local"]
    result = sweep(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert submitted_jobs(tmp_path) == {0: ["model.n_head=5"], 1: ["model.n_head=4"]}
    rows = summary_rows(tmp_path)
    assert rows["0"]["status"] == "failed: model.n_embd=32 must be divisible by model.n_head=5"
    assert rows["1"]["status"] == "finished"
    for job, n_head in (("0", 5), ("1", 4)):  # each job in its own directory, with its own config
        assert OmegaConf.load(tmp_path / job / ".hydra" / "config.yaml").model.n_head == n_head
    assert (tmp_path / "1" / "checkpoints" / "best.ckpt").is_file() and (tmp_path / "curves.png").is_file()
    finished = (tmp_path / "1" / "metrics.json").stat().st_mtime_ns

    result = sweep(tmp_path, *args, "resume=auto")  # the finished job is left; the failed one runs again
    assert result.returncode == 0, result.stderr
    assert submitted_jobs(tmp_path) == {0: ["model.n_head=5"] * 2, 1: ["model.n_head=4"]}
    assert (tmp_path / "1" / "metrics.json").stat().st_mtime_ns == finished
    assert summary_rows(tmp_path)["0"]["status"].startswith("failed") and summary_rows(tmp_path)["1"]["status"] == "finished"


# The Optuna sweeper --------------------------------------------------------------------------

# Trials long enough to be evaluated twice (at steps 10 and 20), quick with the learning rate alone.
LR_SEARCH = ["model=v6", "hparams_search=lr", "hydra.sweeper.sampler.seed=1"]
# A pruner that stops every trial at its first evaluation (no val loss is below 0).
PRUNE_ALL = ["hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner", "~hydra.sweeper.pruner.n_startup_trials",
             "+hydra.sweeper.pruner.upper=0.0"]


def composed(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", list(overrides), return_hydra_config=True)


def load_study(db, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def states(study):
    return [t.state.name for t in study.trials]


def test_the_optuna_sweeper_composes_with_the_default_search_space():
    sweeper = composed("hydra/sweeper=optuna").hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.shakegpt_optuna.sweeper.OptunaSweeper"
    assert set(sweeper.params) == {"optimizer.lr", "model.n_embd", "model.n_head", "model.n_layer", "data.block_size"}
    assert sweeper.custom_search_space == "shakegpt.bookkeeping.sweeps.suggest_dropout"
    assert sweeper.pruner._target_ == "optuna.pruners.MedianPruner" and sweeper.storage is None


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "hparams_search").glob("[!_]*.yaml")))
def test_each_search_space_file_selects_the_optuna_sweeper_and_its_own_space(name):
    sweeper = composed(f"hparams_search={name}", "hydra.sweeper.n_trials=7").hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.shakegpt_optuna.sweeper.OptunaSweeper" and sweeper.n_trials == 7
    space = parse_space(OmegaConf.to_container(sweeper.params), [])
    assert space.distributions and not space.fixed
    if name == "lr":  # replaces the default space, not added to it
        assert list(sweeper.params) == ["optimizer.lr"] and sweeper.custom_search_space is None


def test_search_space_syntax_becomes_optuna_distributions():
    space = parse_space(
        {"a": "range(2, 7)", "b": "tag(log, interval(1e-4, 1e-2))", "c": "choice(32, 64)", "d": "tag(int, interval(1, 5))"},
        ["model=v6", "e=range(0.0, 0.31, 0.05)", "c=64"],
    )
    d = space.distributions
    assert (d["a"].low, d["a"].high, d["a"].step) == (2, 6, 1)  # as in Python, the end is left out
    assert d["b"].log and (d["b"].low, d["b"].high) == (1e-4, 1e-2)
    assert isinstance(d["d"], optuna.distributions.IntDistribution) and (d["d"].low, d["d"].high) == (1, 5)
    assert (d["e"].low, d["e"].high, d["e"].step) == (0.0, 0.3, 0.05)
    assert space.fixed == {"model": "model=v6", "c": "c=64"}  # a plain value on the command line fixes it


def test_the_slurm_launcher_is_sized_from_the_trainer():
    cfg = composed("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=4")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (4, 8, 8)
    # submitit's sbatch --signal=USR2@120 warns each job (shakegpt requeues it), and --requeue lets SLURM requeue it
    assert launcher["signal_delay_s"] == 120 and launcher["additional_parameters"] == {"requeue": True}


@pytest.mark.slow
def test_optuna_sweep_over_the_default_space_reports_the_best_trial(tmp_path):
    result = sweep(tmp_path, "model=v6", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=1")
    assert result.returncode == 0, result.stderr
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    values = [json.loads((tmp_path / j / "metrics.json").read_text())["best_val_loss"] for j in ("0", "1", "2")]
    assert best.best_value == pytest.approx(min(values)) and all(math.isfinite(v) for v in values)
    assert {"optimizer.lr", "model.n_embd", "model.n_head", "model.n_layer", "data.block_size"} <= set(best.best_params)
    summary = (tmp_path / "summary.md").read_text()
    assert f"Best value {best.best_value:.4f} in trial {best.best_trial} (job {best.best_trial})" in summary
    assert "optuna_pruning" not in summary  # the sweeper's own override stays out of the tables


@pytest.mark.slow
def test_a_rerun_continues_a_sqlite_study_up_to_n_trials(tmp_path):
    db = tmp_path / "study.db"
    study = [*LR_SEARCH, f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=lr"]
    first = sweep(tmp_path / "a", *study, "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.stderr
    assert "alembic" not in first.stderr + first.stdout and "A new study created" not in first.stderr
    more = sweep(tmp_path / "b", *study, "hydra.sweeper.n_trials=3")
    assert more.returncode == 0, more.stderr
    assert sorted(p.name for p in (tmp_path / "b").iterdir() if p.name.isdigit()) == ["2"]  # job number = trial number
    again = sweep(tmp_path / "c", *study, "hydra.sweeper.n_trials=3")
    assert again.returncode == 0, again.stderr
    assert states(load_study(db, "lr")) == ["COMPLETE"] * 3
    summary = (tmp_path / "b" / "summary.md").read_text()
    best = OmegaConf.load(tmp_path / "b" / "optimization_results.yaml")
    assert "## Best trial of Optuna study `lr`" in summary and f"Best value {best.best_value:.4f}" in summary


@pytest.mark.slow
def test_a_trial_whose_sweep_died_runs_again_and_counts_once(tmp_path):
    db = tmp_path / "study.db"
    dead = subprocess.Popen(["true"])  # the pid of a process that has ended
    dead.wait()
    orphan = optuna.create_study(study_name="lr", storage=f"sqlite:///{db}").ask()
    orphan.suggest_float("optimizer.lr", 1e-4, 3e-2, log=True)
    orphan.set_user_attr("sweeper_process", f"{socket.gethostname()}:{dead.pid}")
    result = sweep(tmp_path / "s", *LR_SEARCH, f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=lr",
                   "hydra.sweeper.n_trials=2")
    assert result.returncode == 0, result.stderr
    study = load_study(db, "lr")
    assert states(study) == ["COMPLETE", "COMPLETE"]
    assert study.trials[0].params == orphan.params
    assert json.loads((tmp_path / "s" / "0" / "metrics.json").read_text())["lr"] == pytest.approx(orphan.params["optimizer.lr"])


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_pruned_trial_stops_early_and_is_recorded_pruned(tmp_path, launcher):
    db = tmp_path / "study.db"
    result = sweep(tmp_path / "s", *LR_SEARCH, *PRUNE_ALL, "hydra.sweeper.n_trials=2", f"hydra/launcher={launcher}",
                   f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=p")
    assert result.returncode == 0, result.stderr
    assert states(load_study(db, "p")) == ["PRUNED", "PRUNED"]
    for job in ("0", "1"):
        status = json.loads((tmp_path / "s" / job / "status.json").read_text())
        assert status["state"] == "pruned" and status["steps"] == 10  # stopped at its first evaluation of 2
        assert status["reason"].startswith("at step 10, val/loss ")
    rows = summary_rows(tmp_path / "s")
    assert all(row["status"].startswith("pruned: at step 10") for row in rows.values())
    assert "2 jobs: 0 finished, 2 pruned, 0 failed" in (tmp_path / "s" / "summary.md").read_text()


def test_an_in_memory_study_prunes_the_trials_the_sweep_runs_itself(tmp_path):
    result = sweep(tmp_path, *LR_SEARCH, *PRUNE_ALL, "hydra.sweeper.n_trials=1")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "0" / "status.json").read_text())["state"] == "pruned"


@pytest.mark.slow
def test_an_in_memory_study_cannot_prune_trials_in_other_processes_and_says_so(tmp_path):
    result = sweep(tmp_path, *LR_SEARCH, *PRUNE_ALL, "hydra.sweeper.n_trials=1", "hydra/launcher=joblib")
    assert result.returncode == 0, result.stderr
    assert "pruning is off: hydra/launcher=joblib runs trials in other processes" in result.stdout + result.stderr
    assert json.loads((tmp_path / "0" / "status.json").read_text())["state"] == "finished"


@pytest.mark.parametrize("overrides, message", [
    (["hydra.sweeper.storage=nosuchdb://x"], "error: cannot open Optuna study 'shakegpt' in storage nosuchdb://x"),
    (["hydra.sweeper.storage=sqlite:////no/such/dir/study.db"], "unable to open database file"),
    (["model=v3"], "error: the search space does not fit the config: Could not override 'model.n_layer'"),
    (["model.nope=choice(1,2)"], "error: the search space does not fit the config: Could not override 'model.nope'"),
    (["optimizer.lr=tag(log, interval(0, 1))"], "error: search space: optimizer.lr: a log interval must start above 0"),
    (["hydra.sweeper.sampler._target_=optuna.samplers.Nope"], "error: hydra.sweeper.sampler: cannot build optuna.samplers.Nope"),
    (["resume=auto"], "error: resume=auto continues an Optuna study only from a storage"),
    (["+hydra.sweeper.max_batch_size=2"], "error: hydra.sweeper.max_batch_size is the basic sweeper's setting"),
])
def test_bad_optuna_settings_are_one_line_errors(tmp_path, overrides, message):
    code, stderr, _ = run_cli("train.py", "-m", f"hydra.sweep.dir={tmp_path}", *TINY, "hydra/sweeper=optuna", *overrides)
    assert code == 2, stderr
    assert message in stderr and "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if line.startswith("error:")]) == 1


def test_a_search_space_file_refuses_the_basic_sweepers_batch_size(tmp_path):
    # hparams_search=<name> leaves the basic sweeper's max_batch_size (null) in the sweeper's
    # settings; set, it would do nothing, so it is an error.
    code, stderr, _ = run_cli("train.py", "-m", f"hydra.sweep.dir={tmp_path}", *TINY, "hparams_search=lr",
                              "hydra.sweeper.max_batch_size=2")
    assert code == 2 and "error: hydra.sweeper.max_batch_size is the basic sweeper's setting" in stderr, stderr
