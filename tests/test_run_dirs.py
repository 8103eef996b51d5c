"""Where runs and sweeps go: hydra.run.dir and hydra.sweep.dir, read by resume=auto, sample.py's
newest checkpoint and train.py's directory checks from the command line or conf/config.yaml."""

import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from shakegpt.bookkeeping.resume import with_resume_dir
from shakegpt.common import run_dirs
from shakegpt.common.run_dirs import as_glob, split_template
from shakegpt.training.cli import is_named_directory, output_root, slurm_job_args
from tests.helpers import ROOT, run_cli


@pytest.mark.parametrize("template, root, pattern", [
    ("outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}-${hydra:runtime.choices.model}", "outputs", "*/*-*"),
    ("/abs/runs/${oc.env:USER,${now:%H}}x/${hydra.job.num}", "/abs/runs", "*x/*"),
    ("${oc.env:HOME}/runs/${now:%H}${now:%M}", ".", "*/runs/*"),
    ("/tmp/one/run", "/tmp/one/run", ""),
])
def test_a_directory_template_is_a_fixed_root_and_a_glob_below_it(template, root, pattern):
    assert split_template(template) == (Path(root), pattern)


def test_interpolations_nested_or_not_become_one_star():
    assert as_glob("a/${x:${y}}-${z}/b") == "a/*-*/b"


def test_a_command_that_names_one_directory_is_named_whatever_its_path():
    assert is_named_directory(["hydra.run.dir=outputs"]) and output_root(["hydra.run.dir=outputs"]) == Path("outputs")
    assert not is_named_directory(["hydra.run.dir=elsewhere/${now:%H-%M-%S}"])
    assert output_root(["hydra.run.dir=elsewhere/${now:%H-%M-%S}"]) == Path("elsewhere")
    assert output_root(["-m", "model=v6"]) == Path("multirun") and output_root([]) == Path("outputs")


def test_a_slurm_job_runs_in_a_directory_of_its_own(monkeypatch):
    # Every task of the job, and the job SLURM runs again after a requeue, name the same directory.
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert slurm_job_args(["model=v6"]) == ["model=v6", "hydra.run.dir=outputs/slurm-777"]
    assert slurm_job_args(["-m", "model=v6"]) == ["-m", "model=v6", "hydra.sweep.dir=multirun/slurm-777"]
    assert slurm_job_args(["hydra.run.dir=runs/a"]) == ["hydra.run.dir=runs/a"]  # named: the user's
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # requeued: the same command, continued
    assert slurm_job_args(["hydra.run.dir=runs/a", "resume=null"]) == ["hydra.run.dir=runs/a", "resume=auto"]
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # an interactive allocation is not a batch job
    assert slurm_job_args(["model=v6"]) == ["model=v6"]
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert slurm_job_args(["model=v6"]) == ["model=v6"]


def make_unfinished_run(run: Path, overrides: list[str], checkpoint: bytes = b"x") -> Path:
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / "status.json").write_text(json.dumps({"state": "interrupted"}))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(checkpoint)
    (run / "checkpoints" / "best.ckpt").write_bytes(checkpoint)
    return run


def test_resume_auto_searches_where_the_commands_run_dir_puts_runs(tmp_path):
    run = make_unfinished_run(tmp_path / "elsewhere" / "2026-01-01" / "00-00-00", ["model=v6"])
    make_unfinished_run(tmp_path / "outputs" / "2026-01-02" / "00-00-00-v6", ["model=v6"])  # not searched
    typed = f"hydra.run.dir={tmp_path}/elsewhere/${{now:%Y-%m-%d}}/${{now:%H-%M-%S}}"
    assert with_resume_dir(["train.py", "model=v6", typed, "resume=auto"]) == [
        "train.py", "model=v6", "resume=auto", f"hydra.run.dir={run}"]


@pytest.fixture
def other_roots(tmp_path, monkeypatch):
    """conf/config.yaml with its roots changed to runs/ and sweeps/, the current directory tmp_path."""
    config = OmegaConf.load(ROOT / "conf" / "config.yaml")
    config.hydra.run.dir = "runs/${now:%Y-%m-%d}/${now:%H-%M-%S}-${hydra:runtime.choices.model}"
    config.hydra.sweep.dir = "sweeps/${now:%Y-%m-%d}/${now:%H-%M-%S}"
    OmegaConf.save(config, tmp_path / "config.yaml")
    monkeypatch.setattr(run_dirs, "TRAIN_CONFIG", tmp_path / "config.yaml")
    monkeypatch.chdir(tmp_path)


def test_resume_auto_searches_the_configs_roots(other_roots, tmp_path):
    run = make_unfinished_run(Path("runs/2026-01-01/00-00-00-v6"), ["model=v6"])
    make_unfinished_run(Path("outputs/2026-01-02/00-00-00-v6"), ["model=v6"])  # the old root: not searched
    assert with_resume_dir(["train.py", "model=v6", "resume=auto"])[-1] == f"hydra.run.dir={run}"
    sweep = Path("sweeps/2026-01-01/00-00-00")
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n    - model=v6\n")
    assert with_resume_dir(["train.py", "-m", "model=v6", "resume=auto"])[-1] == f"hydra.sweep.dir={sweep}"


def test_sample_finds_the_newest_checkpoint_under_the_configs_roots(other_roots, trained_run):
    code, stderr, _ = run_cli("sample.py", "max_new_tokens=5")
    assert code == 2 and "error: no checkpoint found under runs/ or sweeps/ " in stderr
    best = Path("sweeps/2026-01-01/00-00-00/0/checkpoints/best.ckpt")
    best.parent.mkdir(parents=True)
    shutil.copy(trained_run / "checkpoints" / "best.ckpt", best)
    code, stderr, stdout = run_cli("sample.py", "max_new_tokens=5")
    assert code == 0 and len(stdout) == 6, stderr
