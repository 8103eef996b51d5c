"""An Optuna study that sweeps running at once share, as the sweeps of a cluster job's nodes do:
on a real PostgreSQL server (started by tests/postgres.py) and on Optuna's journal file."""

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from hydra_plugins.shakegpt_optuna._shared import study_lock
from hydra_plugins.shakegpt_optuna._study import masked, open_study, storage_for
from tests.helpers import ROOT, TINY, run_cli
from tests.postgres import PASSWORD, USER, free_port, require_driver

LR = "optimizer.lr"
# Trials queued in the study before the sweeps start, so that their parameters differ and the
# best is known: trial 0's rate learns most in 20 steps.
RATES = [1e-2, 1e-4, 2e-4, 3e-4]
NODES = ("node0", "node1")


def start_sweep(tmp_path, node: str, storage: str, env: dict | None = None) -> subprocess.Popen:
    """One node's sweep over the shared study, its output in <node>.log."""
    command = [sys.executable, str(ROOT / "train.py"), "-m", "model=v6", "hparams_search=lr", *TINY,
               f"hydra.sweep.dir={tmp_path / node}", f"hydra.sweeper.storage={storage}",
               "hydra.sweeper.study_name=shared", f"hydra.sweeper.n_trials={len(RATES)}"]
    log = open(tmp_path / f"{node}.log", "w")
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)


def two_sweeps(tmp_path, storages: list[str], second_env: dict | None = None) -> optuna.Study:
    """Queue RATES in the study, run one sweep per node at once, and return the study."""
    study = optuna.create_study(study_name="shared", storage=storage_for(storages[0]), direction="minimize")
    for rate in RATES:
        study.enqueue_trial({LR: rate})
    sweeps = [start_sweep(tmp_path, NODES[0], storages[0]), start_sweep(tmp_path, NODES[1], storages[1], second_env)]
    for node, sweep in zip(NODES, sweeps):
        assert sweep.wait(timeout=240) == 0, (tmp_path / f"{node}.log").read_text()[-3000:]
    return optuna.load_study(study_name="shared", storage=storage_for(storages[0]))


def check_each_trial_ran_once(tmp_path, study: optuna.Study) -> None:
    """n_trials trials ended in all, each run once, as the job of its number in one sweep."""
    assert [(t.number, t.state.name) for t in study.trials] == [(n, "COMPLETE") for n in range(len(RATES))]
    assert sorted(t.params[LR] for t in study.trials) == sorted(RATES)
    jobs = {node: sorted(int(d.name) for d in (tmp_path / node).iterdir() if d.name.isdigit()) for node in NODES}
    assert sorted(jobs[NODES[0]] + jobs[NODES[1]]) == list(range(len(RATES))), jobs
    assert all(jobs.values()), f"one sweep ran every trial, the other none: {jobs}"
    for node, numbers in jobs.items():
        for number in numbers:
            metrics = json.loads((tmp_path / node / str(number) / "metrics.json").read_text())
            assert metrics["lr"] == pytest.approx(study.trials[number].params[LR])


def check_each_summary_names_the_studys_best(tmp_path, study: optuna.Study) -> None:
    best = study.best_trial
    assert best.number == 0 and best.params[LR] == RATES[0]
    for node in NODES:
        results = OmegaConf.load(tmp_path / node / "optimization_results.yaml")
        assert (results.best_trial, results.best_value) == (0, pytest.approx(best.value))
        summary = (tmp_path / node / "summary.md").read_text()
        assert f"Best value {best.value:.4f} in trial 0 " in summary
        assert f"(n_trials={len(RATES)})" in summary  # the first to end may see the other's last trial running
        assert PASSWORD not in summary + (tmp_path / node / "optimization_results.yaml").read_text()


def check_optuna_cli_shows_the_study(storage: str, env: dict | None = None) -> None:
    """What docs/cluster.md tells a user to watch a shared study with: Optuna's own command."""
    optuna_cli = Path(sys.executable).parent / "optuna"
    shown = {}
    for command in ("trials", "best-trial"):
        result = subprocess.run([str(optuna_cli), command, "--study-name", "shared", "--storage", storage, "-f", "json"],
                                capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr
        shown[command] = json.loads(result.stdout)
    assert [trial["number"] for trial in shown["trials"]] == list(range(len(RATES)))
    assert shown["best-trial"]["number"] == 0


@pytest.mark.slow
def test_two_sweeps_share_a_postgresql_study_and_run_n_trials_together(tmp_path, postgres_url):
    # The second node keeps the password out of its command line and records: libpq reads PGPASSWORD.
    without_password = postgres_url.replace(f":{PASSWORD}@", "@")
    with_password_variable = {**os.environ, "PGPASSWORD": PASSWORD}
    study = two_sweeps(tmp_path, [postgres_url, without_password], with_password_variable)
    check_each_trial_ran_once(tmp_path, study)
    check_each_summary_names_the_studys_best(tmp_path, study)
    check_optuna_cli_shows_the_study(without_password, with_password_variable)
    assert f"postgresql+psycopg://{USER}:***@" in (tmp_path / "node0" / "summary.md").read_text()


@pytest.mark.slow
def test_two_sweeps_share_a_journal_file_study_and_run_n_trials_together(tmp_path):
    journal = tmp_path / "study.log"
    storage = f"journal:///{journal}"  # an absolute path: journal:////tmp/...
    study = two_sweeps(tmp_path, [storage, storage])
    check_each_trial_ran_once(tmp_path, study)
    check_each_summary_names_the_studys_best(tmp_path, study)
    check_optuna_cli_shows_the_study(str(journal))  # the command takes the file's path and reads it as a journal
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("study.log")) == ["study.log"]  # no lock left


@pytest.mark.parametrize("kind", ["postgresql", "journal", "sqlite"])
def test_the_study_lock_lets_one_sweep_at_a_time_count_and_ask(kind, tmp_path, request):
    url = {"journal": f"journal:///{tmp_path}/study.log", "sqlite": f"sqlite:///{tmp_path}/study.db"}.get(kind)
    if kind == "postgresql":
        url = request.getfixturevalue("postgres_url")
    entered = []

    def other_sweep():
        with study_lock(url, "shared"):
            entered.append("other")

    with study_lock(url, "shared"):
        other = threading.Thread(target=other_sweep)
        other.start()
        time.sleep(0.5)
        entered.append("holder")
    other.join(timeout=30)
    assert entered == ["holder", "other"]


def test_sweeps_starting_at_once_on_a_new_database_all_open_the_study(postgres_url):
    # Optuna creates its tables on first use, unguarded: the nodes of one job race to do it.
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: open_study("shared", postgres_url, "minimize"), range(4)))
    assert optuna.get_all_study_names(storage=postgres_url) == ["shared"]


def test_a_storage_url_shows_no_password():
    assert masked(f"postgresql://{USER}:p@ss:w@host:5432/db") == f"postgresql://{USER}:***@host:5432/db"
    assert masked("postgresql+psycopg2://user@host/db") == "postgresql+psycopg2://user@host/db"
    assert masked("sqlite:///study.db") == "sqlite:///study.db" and masked(None) is None


def one_error_line(tmp_path, storage: str) -> str:
    """The sweep's stderr: exit 2, one `error:` line, no traceback, no password."""
    code, stderr, _ = run_cli("train.py", "-m", f"hydra.sweep.dir={tmp_path / 's'}", *TINY, "hparams_search=lr",
                              f"hydra.sweeper.storage={storage}")
    assert code == 2, stderr
    assert len([line for line in stderr.splitlines() if line.startswith("error:")]) == 1, stderr
    assert "Traceback" not in stderr and PASSWORD not in stderr and "wrong-pw" not in stderr, stderr
    return stderr


def test_a_database_server_that_is_down_is_one_error_line(tmp_path):
    require_driver()
    port = free_port()  # nothing listens there
    stderr = one_error_line(tmp_path, f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{port}/study")
    assert f"cannot open Optuna study 'shakegpt' in storage postgresql+psycopg://{USER}:***@127.0.0.1:{port}/study: " in stderr
    assert "Connection refused" in stderr


def test_a_wrong_database_password_is_one_error_line(tmp_path, postgres_url):
    stderr = one_error_line(tmp_path, postgres_url.replace(f":{PASSWORD}@", ":wrong-pw@"))
    assert f"in storage postgresql+psycopg://{USER}:***@127.0.0.1:" in stderr
    assert f'password authentication failed for user "{USER}"' in stderr


@pytest.mark.parametrize("path, message", [
    ("no/such/dir/study.log", "No such file or directory"),
    ("a-file/study.log", "Not a directory"),
])
def test_a_journal_file_that_cannot_be_made_is_one_error_line(tmp_path, path, message):
    (tmp_path / "a-file").write_text("")
    stderr = one_error_line(tmp_path, f"journal:///{tmp_path / path}")
    assert f"error: cannot open Optuna study 'shakegpt' in storage journal:///{tmp_path / path}: " in stderr
    assert message in stderr


def test_a_journal_storage_without_its_path_is_one_error_line(tmp_path):
    stderr = one_error_line(tmp_path, "journal://study.log")
    assert "a journal storage is journal:///<path> (journal:////shared/study.log when absolute)" in stderr
