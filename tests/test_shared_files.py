"""Run directories, caches and studies from someone else are data: no write follows a link
planted in them, and nothing they hold becomes a path to open or an override to run."""

import json
import os
import shutil
import socket

import numpy as np
import pytest

from shakegpt.common import atomic
from shakegpt.common.atomic import WriteError, save_figure, write_bytes, write_text
from shakegpt.common.errors import UserError
from tests.helpers import TINY, run_cli, run_script


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("untouched")
    return path


def test_a_write_never_follows_a_link_at_the_target(tmp_path, victim):
    target = tmp_path / "status.json"
    target.symlink_to(victim)
    with pytest.raises(WriteError, match=f"cannot write {target}: it is a symbolic link, and shakegpt never writes through one"):
        write_text(target, "{}")
    assert victim.read_text() == "untouched" and target.is_symlink()


def test_links_planted_at_the_old_temporary_names_are_never_followed(tmp_path, victim):
    import matplotlib.pyplot as plt

    for name in (".best.ckpt.partial", ".partial.curves.png", ".summary.md.partial"):
        (tmp_path / name).symlink_to(victim)
    write_bytes(tmp_path / "best.ckpt", b"weights", sync=True)
    write_text(tmp_path / "summary.md", "summary")
    figure = plt.figure()
    save_figure(figure, tmp_path / "curves.png")
    plt.close(figure)
    assert victim.read_text() == "untouched"
    assert (tmp_path / "best.ckpt").read_bytes() == b"weights" and (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink()) == ["best.ckpt", "curves.png", "summary.md", "victim.txt"]


def test_a_temporary_name_already_taken_even_by_a_link_is_skipped(tmp_path, victim, monkeypatch):
    """Each writer creates its own temporary file exclusively: a name that exists (another
    writer's, or a link someone guessed) is never opened; another is drawn."""
    drawn = iter(["taken", "fresh"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(drawn))
    (tmp_path / ".out.txt.taken.partial").symlink_to(victim)
    write_text(tmp_path / "out.txt", "mine")
    assert (tmp_path / "out.txt").read_text() == "mine" and victim.read_text() == "untouched"


@pytest.mark.parametrize("planted", [".hydra/config.yaml", ".hydra/overrides.yaml", "train.log", "status.json", "checkpoints/best.ckpt"])
def test_a_run_directory_holding_a_link_is_refused_before_anything_is_written(tmp_path, victim, planted):
    run_dir = tmp_path / "run"
    (run_dir / planted).parent.mkdir(parents=True)
    (run_dir / planted).symlink_to(victim)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    code, stderr, _ = run_cli("train.py", "model=bigram", "resume=auto", f"hydra.run.dir={run_dir}", *TINY)
    assert code == 2 and stderr == (
        f"error: {run_dir / planted} is a symbolic link, and a run directory holds only its own files: "
        "remove the link, or run in a new directory\n"
    )
    assert victim.read_text() == "untouched" and sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before


def test_a_sweep_summary_refuses_a_planted_link(tmp_path, victim, trained_run):
    sweep = tmp_path / "sweep"
    shutil.copytree(trained_run, sweep / "0")
    (sweep / "summary.md").symlink_to(victim)
    code, stderr, _ = run_cli("report.py", str(sweep))
    assert code == 2 and stderr == f"error: cannot write {sweep / 'summary.md'}: it is a symbolic link, and shakegpt never writes through one (remove it)\n"
    assert victim.read_text() == "untouched"


# ---- the corpus cache ----

@pytest.fixture
def cached(tmp_path):
    """A corpus prepared once into its own cache: (corpus, cache, entry, its tokens)."""
    from shakegpt.data import prepare_corpus

    corpus, cache = tmp_path / "corpus.txt", tmp_path / "cache"
    corpus.write_text("to be, or not to be: that is the question. " * 200)
    prepared = prepare_corpus(corpus, "char", cache)
    return corpus, cache, prepared.directory, prepared.tokens.clone()


def meta_edit(**fields):
    def edit(entry):
        meta = json.loads((entry / "meta.json").read_text())
        (entry / "meta.json").write_text(json.dumps(meta | fields))
    return edit


def tokens_edit(change):
    def edit(entry):
        tokens = np.fromfile(entry / "tokens.bin", dtype=np.uint8)
        change(tokens)
        tokens.tofile(entry / "tokens.bin")
    return edit


CACHE_CASES = [
    ("float64", meta_edit(dtype="float64"), "has the wrong token type"),
    ("huge vocabulary", meta_edit(vocab="".join(map(chr, range(32, 60_000)))), "has an impossible vocabulary"),
    ("unsorted vocabulary", lambda e: meta_edit(vocab=json.loads((e / "meta.json").read_text())["vocab"][::-1])(e), "has an impossible vocabulary"),
    ("count", meta_edit(n_tokens=10**12), "has an impossible token count"),
    ("not an object", lambda e: (e / "meta.json").write_text("[1, 2]"), "is unreadable"),
    ("zeroed tokens", tokens_edit(lambda t: t.fill(0)), "has symbols its tokens never use"),
    ("ids beyond the vocabulary", tokens_edit(lambda t: t.__setitem__(5, 200)), "holds tokens beyond its vocabulary"),
    ("relabelled", tokens_edit(lambda t: t.__setitem__(slice(None), (t + 1) % (t.max() + 1))), "does not spell the source"),
    ("short", lambda e: os.truncate(e / "tokens.bin", 10), "is incomplete"),
]


@pytest.mark.parametrize("name, edit, problem", CACHE_CASES, ids=[c[0] for c in CACHE_CASES])
def test_a_crafted_cache_entry_is_prepared_again(cached, capsys, name, edit, problem):
    from shakegpt.data import prepare_corpus

    corpus, cache, entry, tokens = cached
    edit(entry)
    capsys.readouterr()
    prepared = prepare_corpus(corpus, "char", cache)
    assert f"the corpus cache {entry} {problem}: preparing it again" in capsys.readouterr().err
    assert np.array_equal(prepared.tokens.numpy(), tokens.numpy())


@pytest.mark.parametrize("name", ["tokens.bin", "meta.json"])
def test_a_link_in_a_cache_entry_is_replaced_and_its_target_untouched(cached, victim, capsys, name):
    from shakegpt.data import prepare_corpus

    corpus, cache, entry, tokens = cached
    (entry / name).unlink()
    (entry / name).symlink_to(victim)
    prepared = prepare_corpus(corpus, "char", cache)
    assert "holds a symbolic link: preparing it again" in capsys.readouterr().err
    assert victim.read_text() == "untouched" and not (entry / name).is_symlink()
    assert np.array_equal(prepared.tokens.numpy(), tokens.numpy())


def test_links_at_a_cache_entry_s_lock_or_the_entry_itself_are_refused(cached, victim, tmp_path):
    from shakegpt.data import prepare_corpus

    corpus, cache, entry, _ = cached
    (entry / "lock").unlink()
    (entry / "lock").symlink_to(victim)
    with pytest.raises(UserError, match=f"cannot use the corpus cache {entry}: Too many levels of symbolic links"):
        prepare_corpus(corpus, "char", cache)
    shutil.rmtree(entry)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    entry.symlink_to(elsewhere)
    with pytest.raises(UserError, match=f"the corpus cache entry {entry} is a symbolic link; remove it, or set data.cache_dir"):
        prepare_corpus(corpus, "char", cache)
    assert victim.read_text() == "untouched" and list(elsewhere.iterdir()) == []


# ---- a run directory's own files, read back ----

def test_evaluate_does_not_read_or_write_where_a_run_s_saved_config_says(tmp_path, trained_run):
    from tests.test_shared_checkpoints import run_module
    from shakegpt import evaluate

    run_dir = tmp_path / "shared"
    shutil.copytree(trained_run, run_dir)
    config = run_dir / ".hydra" / "config.yaml"
    outside, written = tmp_path / "secret.txt", tmp_path / "planted-cache"
    outside.write_text("a file of the user's that a shared run must not get read " * 50)
    config.write_text(config.read_text().replace("path: null", f"path: {outside}").replace("cache_dir: null", f"cache_dir: {written}"))
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    code, stderr = run_module(evaluate, [f"ckpt={ckpt}"])
    assert code == 2 and stderr == (
        f"error: the run of {ckpt} was trained on {outside}, outside this directory; to score on that file, "
        "pass corpus=<its path> (a run directory from elsewhere does not choose which files are read)\n"
    )
    assert not written.exists()


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", '"finished"'])
def test_malformed_status_and_metrics_files_read_as_empty(tmp_path, trained_run, content):
    from shakegpt.bookkeeping.runs import load_run

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    (run_dir / "status.json").write_text(content)
    (run_dir / "metrics.json").write_text(content)
    run = load_run(run_dir)
    assert run.status == {} and run.metrics == {}
    code, stderr, _ = run_cli("report.py", str(run_dir))
    assert code == 0, stderr


# ---- a shared Optuna study ----

def test_stored_parameters_must_be_a_point_of_the_search_space():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hydra_plugins.shakegpt_optuna._space import stored_params_problem

    space = {"optimizer.lr": FloatDistribution(1e-4, 3e-2, log=True), "model.n_layer": IntDistribution(1, 4),
             "model.n_embd": CategoricalDistribution([32, 64])}
    good = {"optimizer.lr": 1e-3, "model.n_layer": 2, "model.n_embd": 64}
    assert stored_params_problem(good, space) is None
    assert "('data.path')" in stored_params_problem(good | {"data.path": "/etc/passwd"}, space)
    assert "('+callbacks.x._target_')" in stored_params_problem(good | {"+callbacks.x._target_": "os.system"}, space)
    for name, value in [("optimizer.lr", 0.5), ("optimizer.lr", "1e-3"), ("optimizer.lr", float("nan")),
                        ("model.n_layer", 2.5), ("model.n_layer", True), ("model.n_embd", "64"), ("model.n_embd", 48)]:
        assert stored_params_problem(good | {name: value}, space) == f"its {name}={value!r} lies outside this search space"


@pytest.mark.slow
def test_a_crafted_study_s_orphaned_trials_are_never_run(tmp_path, victim):
    """Trials left RUNNING by a 'dead' sweep, with parameters outside the space or keys of their
    own, are marked failed; a huge recorded pid is no traceback; only real trials run."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from tests.test_sweeps import LR_SEARCH, load_study, states

    db = tmp_path / "study.db"
    study = optuna.create_study(study_name="lr", storage=f"sqlite:///{db}")
    crafted = [
        {"optimizer.lr": 1e-3, "data.path": str(victim)},
        {"optimizer.lr": 1e-3, "+callbacks.evil._target_": "shakegpt.common.atomic.write_text"},
        {"optimizer.lr": 5.0},
    ]
    dead = f"{socket.gethostname()}:{10**30}"  # a pid no process can have
    for params in crafted:
        distributions = {name: FloatDistribution(1e-9, 10, log=True) if isinstance(value, float) else CategoricalDistribution([value])
                         for name, value in params.items()}
        study.add_trial(create_trial(params=params, distributions=distributions, state=TrialState.RUNNING,
                                     user_attrs={"sweeper_process": dead}))
    result = run_script("train.py", "-m", f"hydra.sweep.dir={tmp_path / 's'}", *TINY, *LR_SEARCH,
                        f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=lr", "hydra.sweeper.n_trials=4")
    assert result.returncode == 0, result.stderr
    assert states(load_study(db, "lr")) == ["FAIL", "FAIL", "FAIL", "COMPLETE"]
    for number in range(3):
        assert f"trial {number} is not run again" in result.stderr + result.stdout
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.name.isdigit()) == ["3"]
    assert victim.read_text() == "untouched"


@pytest.mark.parametrize("content", ["[unclosed", "{a: 1}", "- [1, 2]"])
def test_malformed_saved_overrides_are_passed_over_by_resume_and_one_line_for_report(tmp_path, trained_run, content):
    from shakegpt.bookkeeping.resume import find_unfinished_run

    run_dir = tmp_path / "outputs" / "2026-01-01" / "00-00-00-v6"
    shutil.copytree(trained_run, run_dir)
    (run_dir / "status.json").write_text('{"state": "interrupted"}')
    (run_dir / ".hydra" / "overrides.yaml").write_text(content)
    assert find_unfinished_run(["model=v6"], tmp_path / "outputs", "*/*") is None
    code, stderr, _ = run_cli("report.py", str(run_dir))
    assert code == 2 and stderr == (
        f"error: {run_dir / '.hydra' / 'overrides.yaml'} is not a list of overrides Hydra wrote; the run directory is damaged\n"
    )
