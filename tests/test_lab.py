"""shakegpt's Python API (shakegpt.lab): the command line's runs, files, errors and resume, from Python."""

import datetime
import inspect
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import shakegpt
from shakegpt.bookkeeping.checkpoints import read_checkpoint
from shakegpt.bookkeeping.locks import hold, release
from shakegpt.common.errors import UserError
from tests.helpers import ROOT, TINY, run_script


def steps(n: int) -> list[str]:
    """TINY, trained to step n."""
    return [o for o in TINY if not o.startswith("trainer.max_steps=")] + [f"trainer.max_steps={n}"]


@pytest.fixture(scope="module")
def python_run(tmp_path_factory):
    """One tiny v2 run trained by shakegpt.train, in a directory of its own as working directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("lab"))
        yield shakegpt.train("model=v2", *TINY)


def test_importing_shakegpt_loads_no_torch():
    script = "import sys, shakegpt; assert not {'torch', 'lightning', 'hydra'} & set(sys.modules), sys.modules.keys()"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert shakegpt.train.__module__ == "shakegpt.lab"


@pytest.mark.slow
def test_a_run_from_python_is_train_py_s_run(python_run):
    path = python_run.path
    assert path.is_absolute() and path.parent.parent.name == "outputs"
    assert path.parent.name == datetime.date.today().isoformat() and path.name.endswith("-v2")
    assert OmegaConf.to_container(OmegaConf.load(path / ".hydra" / "overrides.yaml")) == ["model=v2", *TINY]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        expected = OmegaConf.to_container(compose("config", ["model=v2", *TINY]), resolve=False)
    assert OmegaConf.to_container(OmegaConf.load(path / ".hydra" / "config.yaml"), resolve=False) == expected
    assert python_run.state == "finished" and python_run.step == 20
    assert read_checkpoint(path / "checkpoints" / "last.ckpt")["global_step"] == 20
    assert hold(path), "the run's lock was left held"
    release(path)


@pytest.mark.slow
def test_a_run_started_in_python_resumes_from_the_command_line_and_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = shakegpt.train("model=v2", *steps(10))
    resumed = run_script("train.py", "model=v2", *steps(20), f"hydra.run.dir={run.path}", "resume=auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert shakegpt.load_run(run.path).step == 20
    again = shakegpt.train("model=v2", *steps(30), run_dir=run.path, resume="auto")
    assert again.path == run.path and again.state == "finished"
    assert read_checkpoint(run.path / "checkpoints" / "last.ckpt")["global_step"] == 30
    assert len(again.curve("val/loss")) == 3  # one record across the three processes


@pytest.mark.slow
def test_two_calls_in_one_second_get_two_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    now = datetime.datetime.now()
    for seconds in range(4):  # the name Hydra gives a v2 run started in any of the next few seconds
        moment = now + datetime.timedelta(seconds=seconds)
        (tmp_path / "outputs" / moment.strftime("%Y-%m-%d") / moment.strftime("%H-%M-%S-v2")).mkdir(parents=True)
    threads = torch.get_num_threads()
    run = shakegpt.train("model=v2", *steps(5), "trainer.val_check_interval=5")
    assert run.path.name.endswith("-v2-2") and run.state == "finished"
    assert torch.get_num_threads() == threads  # the run's choice (1, for v2) is not left behind


def test_user_errors_are_the_command_line_s_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as refused:
        shakegpt.train("model=v2", "trainer.fast_dev_run=1")
    cli = run_script("train.py", "model=v2", "trainer.fast_dev_run=1", cwd=tmp_path)
    assert cli.returncode == 2 and cli.stderr.strip() == f"error: {refused.value}"
    assert refused.value._render_traceback_() == [f"UserError: {refused.value}"]
    with pytest.raises(UserError, match="Could not find 'model/nope'") as unknown:
        shakegpt.train("model=nope")
    assert unknown.value.__cause__ is None and unknown.value.__suppress_context__
    with pytest.raises(UserError, match="not its flags such as -m"):
        shakegpt.train("-m", "model=v2")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_a_run_refused_before_it_begins_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"^model.n_embd=32 must be divisible by model.n_head=5$") as failed:
        shakegpt.train("model=v3", "model.n_head=5", run_dir=tmp_path / "run")
    assert failed.value.__cause__ is None and failed.value.__suppress_context__  # not Hydra's wrapper
    assert list(tmp_path.iterdir()) == []  # as train.py: the directory it made is gone


def test_ddp_is_refused_in_one_line_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"from the command line, python train.py trainer=ddp_cpu model=v2$"):
        shakegpt.train("trainer=ddp_cpu", "model=v2")
    with pytest.raises(UserError, match="command line"):
        shakegpt.train("model=v2", "trainer.devices=2")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_run_directory_is_not_reused(python_run):
    with pytest.raises(UserError, match="holds a run already: continue it with resume=auto"):
        shakegpt.train("model=v2", *TINY, run_dir=python_run.path)


@pytest.mark.slow
def test_samples_are_sample_py_s(python_run):
    best = python_run.path / "checkpoints" / "best.ckpt"
    cli = run_script("sample.py", f"ckpt={best}", "prompt=ROMEO:", "max_new_tokens=40", "seed=7", "device=cpu")
    assert cli.returncode == 0, cli.stderr
    assert python_run.sample(prompt="ROMEO:", max_new_tokens=40, seed=7, device="cpu") + "\n" == cli.stdout
    texts = python_run.sample(prompt="ROMEO:", max_new_tokens=20, num_samples=3)
    assert len(texts) == 3 and len(set(texts)) == 3 and all(t.startswith("ROMEO:") and len(t) == 26 for t in texts)
    defaults = OmegaConf.load(ROOT / "conf" / "sample.yaml")
    for name, parameter in inspect.signature(shakegpt.Run.sample).parameters.items():
        if name in defaults:
            assert parameter.default == (defaults[name] if name != "prompt" else ""), name
    with pytest.raises(UserError, match="top_k must be an integer"):
        python_run.sample(top_k=0)


@pytest.mark.slow
def test_curves_plots_evaluation_attention_and_comparison(python_run, capsys):
    from matplotlib.figure import Figure

    from shakegpt import evaluate

    curves = python_run.curves()
    assert curves["val"].keys() == curves["train"].keys() == {10, 20}
    assert isinstance(python_run.plot(), Figure) and len(python_run.plot().axes[0].lines) == 2
    evaluate.main([f"ckpt={python_run.path / 'checkpoints' / 'best.ckpt'}", "split=val"])
    assert f"val: loss {python_run.evaluate('val'):.4f}," in capsys.readouterr().out
    with pytest.raises(UserError, match="split must be one of"):
        python_run.evaluate("dev")
    assert len(python_run.attention("ROMEO:").axes) == 2  # v2: one layer, one head, and the colour bar
    both = shakegpt.compare(python_run, python_run.path)
    assert [row["steps"] for row in both.rows] == [20, 20] and str(both).startswith("| job | overrides |")
    assert len(both.plot().axes[0].lines) == 2
    with pytest.raises(UserError, match="is not a shakegpt run directory"):
        shakegpt.load_run(python_run.path.parent)


@pytest.mark.slow
def test_a_sweep_is_train_py_s_multirun(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    study = shakegpt.sweep("model=v2", *steps(5), "trainer.val_check_interval=5", "model.n_head=1,2", sweep_dir="study")
    assert [run.overrides[-1] for run in study.runs] == ["model.n_head=1", "model.n_head=2"]
    assert all(run.state == "finished" for run in study.runs) and (tmp_path / "study" / "summary.md").is_file()
    assert [row["overrides"] for row in study.rows] == ["model.n_head=1", "model.n_head=2"]
    assert "Launching 2 jobs locally" in capsys.readouterr().out  # its output shows where it was called
