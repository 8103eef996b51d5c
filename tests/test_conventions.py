"""Lightning's and Hydra's conventions as a user of either brings them to train.py: each flag works
with the right figures or is refused in one line naming what to use, and the flags that only print
(--help, --cfg, --info) create nothing."""

import json
import re

import pytest
from omegaconf import OmegaConf

from shakegpt.bookkeeping.runs import load_run
from shakegpt.common.errors import UserError
from shakegpt.training.checks import refuse_lightning_limits
from tests.helpers import ROOT, TINY, run_cli, run_script

GROUPS = [path for path in (ROOT / "conf").iterdir() if path.is_dir() and path.name != "hydra"]


def test_help_is_the_labs_page_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stderr, stdout = run_cli("train.py", "--help")
    assert (code, stderr) == (0, "")
    assert stdout.startswith("python train.py [group=option ...] [key=value ...]")
    for group in GROUPS:  # every group and each of its options, internal ones (_empty) left out
        assert f"\n  {group.name}=" in stdout, group.name
        for option in group.glob("[!_]*.yaml"):
            assert re.search(rf"\b{option.stem}\b", stdout), f"{group.name}={option.stem}"
    assert "_empty" not in stdout and "Configuration groups" not in stdout  # not Hydra's generic page
    for what in ("trainer.max_steps=N", "outputs/<date>/<time>-<model>/", "multirun/", "resume=auto", "ckpt_path="):
        assert what in stdout, what
    assert list(tmp_path.iterdir()) == []


PRINT_ONLY = [["--hydra-help"], ["--cfg", "job"], ["--cfg", "job", "--resolve"], ["--cfg", "hydra"], ["--info"], ["-m", "--help"]]


def test_help_into_a_closed_pipe_ends_quietly():
    """`python train.py --help | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "train.py", "--help"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the page is written
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141 and b"Traceback" not in stderr, stderr.decode()


@pytest.mark.parametrize("flags", PRINT_ONLY, ids=" ".join)
def test_flags_that_print_create_nothing(tmp_path, monkeypatch, flags):
    monkeypatch.chdir(tmp_path)
    code, stderr, stdout = run_cli("train.py", *flags)
    assert code == 0, stderr
    assert stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--cfg", "--info"])
def test_a_sweep_s_config_is_one_line_naming_the_way(tmp_path, monkeypatch, flag):
    monkeypatch.chdir(tmp_path)
    code, stderr, _ = run_cli("train.py", "-m", "model=v5,v6", flag, *(["hydra"] if flag == "--cfg" else []))
    assert code == 2
    assert stderr == "error: --cfg and --info show one run's config, not a sweep's: drop -m (--cfg hydra shows the sweep settings)\n"
    assert list(tmp_path.iterdir()) == []


def test_resolve_without_cfg_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stderr, _ = run_cli("train.py", "--resolve")
    assert (code, stderr) == (2, "error: --resolve goes with --cfg job (the config resolved) or --help\n")
    assert list(tmp_path.iterdir()) == []


def test_cfg_job_resolve_prints_the_resolved_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stderr, stdout = run_cli("train.py", "model=bigram", "--cfg", "job", "--resolve")
    assert code == 0, stderr
    cfg = OmegaConf.create(stdout)
    assert cfg.data.seed == cfg.seed == 1337 and cfg.data.batch_size == 32  # interpolations resolved


QUICK = "trainer.max_steps={n} trainer.val_check_interval={n} data.eval_iters={n}"
REFUSED = [
    ("+trainer.fast_dev_run=true", f"trainer.fast_dev_run=True is not supported here: for a quick run use {QUICK.format(n=1)}"),
    ("+trainer.fast_dev_run=5", f"trainer.fast_dev_run=5 is not supported here: for a quick run use {QUICK.format(n=5)}"),
    ("+trainer.limit_val_batches=2", "trainer.limit_val_batches=2 is not supported here: an evaluation scores data.eval_iters"),
    ("trainer.limit_val_batches=0.5", "trainer.limit_val_batches=0.5 is not supported here"),  # no +: Hydra would refuse in six lines
    ("+trainer.limit_train_batches=10", "trainer.limit_train_batches=10 is not supported here: the length of training is trainer.max_steps"),
    ("+trainer.overfit_batches=1", "trainer.overfit_batches=1 is not supported here: training draws fresh random windows"),
]


@pytest.mark.parametrize("override, message", REFUSED, ids=[case[0] for case in REFUSED])
def test_lightning_batch_limits_are_refused_in_one_line_before_any_directory(tmp_path, monkeypatch, override, message):
    monkeypatch.chdir(tmp_path)
    code, stderr, _ = run_cli("train.py", "model=bigram", *TINY, override)
    assert code == 2
    assert stderr.startswith(f"error: {message}") and stderr.count("\n") == 1, stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["fast_dev_run", "limit_val_batches", "overfit_batches"])
def test_a_limit_set_in_a_config_file_is_refused_too(flag, tmp_path):
    from shakegpt.tools.bench import compose_config
    from shakegpt.training.checks import check_config

    cfg = compose_config(["model=bigram", f"+trainer.{flag}=2"], tmp_path)  # as an experiment file would set it
    with pytest.raises(UserError, match=f"trainer.{flag}=2 is not supported here"):
        check_config(cfg)


def test_limits_at_lightnings_defaults_are_accepted():
    refuse_lightning_limits({"fast_dev_run": False, "limit_train_batches": 1.0, "limit_val_batches": None, "overfit_batches": 0.0})
    with pytest.raises(UserError):  # an int counts batches: 1 is one batch, not all of them
        refuse_lightning_limits({"limit_val_batches": 1})


def test_accumulated_batches_count_in_the_effective_batch_and_tokens(tmp_path):
    result = run_script("train.py", "model=bigram", *TINY, "trainer.accumulate_grad_batches=3", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["steps"], metrics["effective_batch"]) == (20, 3 * 32)
    assert metrics["tokens"] == 20 * 3 * 32 * 8  # steps x accumulated batches x batch x block
    assert json.loads((tmp_path / "status.json").read_text())["tokens_per_step"] == 3 * 32 * 8
    run = load_run(tmp_path)
    assert list(run.curve("val/loss")) == [10, 20]  # val_check_interval and log_every_n_steps stay in steps
    assert list(run.curve("train/step_loss")) == list(run.curve("perf/tokens_per_s")) == [5, 10, 15, 20]
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert "train ━" in result.stdout and " 60/60 " in result.stdout  # the bar counts the batches


def test_throughput_is_logged_once_per_logging_step_over_whole_steps():
    from types import SimpleNamespace

    import torch

    from shakegpt.training.callbacks import Throughput

    logged = []
    module = SimpleNamespace(log=lambda name, value, **kwargs: logged.append(trainer.global_step))
    trainer = SimpleNamespace(world_size=1, global_step=4, log_every_n_steps=2)  # resumed at step 4
    throughput, batch = Throughput(), (torch.zeros(2, 8), None)
    throughput.on_train_start(trainer, module)
    for step_after in [4, 5, 5, 6, 6, 7, 7, 8]:  # 2 batches a step: the step ends on the second
        throughput.on_train_batch_start(trainer, module, batch, 0)
        trainer.global_step = step_after
        throughput.on_train_batch_end(trainer, module, None, batch, 0)
    assert logged == [6, 8]


def test_the_periodic_checkpoint_knows_an_evaluation_follows_in_steps():
    from types import SimpleNamespace

    from shakegpt.training.callbacks import evaluation_follows

    # val_check_interval=10 steps of 3 batches: Lightning's val_check_batch counts 30 batches
    trainer = SimpleNamespace(val_check_batch=30, accumulate_grad_batches=3, max_steps=25)
    follows = [step for step in range(1, 26) if evaluation_follows(SimpleNamespace(**vars(trainer), global_step=step))]
    assert follows == [10, 20, 25]


def test_accumulated_batches_resume_where_the_stream_left_off(tmp_path):
    from types import SimpleNamespace

    from shakegpt.data import CorpusDataModule

    data = CorpusDataModule(batch_size=4, block_size=8)
    data.trainer = SimpleNamespace(global_rank=0, global_step=0, accumulate_grad_batches=3)
    stream = iter(data.train_dataloader())
    fresh = [next(stream)[0] for _ in range(7)]
    data.trainer.global_step = 2  # resumed after 2 steps of 3 batches: the 7th batch comes next
    assert next(iter(data.train_dataloader()))[0].equal(fresh[6])
