"""train.py end to end, as a user runs it."""

import json

import pytest
import torch

from shakegpt.bookkeeping.runs import load_run
from tests.helpers import ROOT, TINY, run_script


def test_train_writes_checkpoints_tensorboard_and_metrics(trained_run):
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert list(trained_run.glob("events.out.tfevents.*"))
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["steps"] == 20
    assert metrics["tokens"] == 20 * 32 * 8  # steps x batch x block, one process
    assert (metrics["device"], metrics["accelerator"]) == ("cpu, 1 thread", "cpu")
    assert metrics["parameters"] == 42_369
    assert metrics["best_val_loss"] <= metrics["final_val_loss"]


def test_tensorboard_has_the_lecture_metrics(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # In the run directory itself: `tensorboard --logdir outputs` names the run after it.
    assert {p.parent for p in trained_run.rglob("events.out.tfevents.*")} == {trained_run}
    events = EventAccumulator(str(trained_run), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    expected = {"train/step_loss", "train/loss", "val/loss", "train/perplexity", "val/perplexity", "train/bpc", "val/bpc", "train/lr", "perf/tokens_per_s"}
    assert set(tags["scalars"]) == expected  # no `epoch` card, no one-point hp/ cards
    # evaluated every 10 steps: after steps 10 and 20
    assert [e.step + 1 for e in events.Scalars("val/loss")] == [10, 20]
    assert "sample/text_summary" in tags["tensors"]
    layout = events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    assert b"^train/loss$" in layout and b"^val/loss$" in layout  # one chart in Custom Scalars
    hparams_view = events.SummaryMetadata("_hparams_/experiment").plugin_data.content
    assert b"val/loss" in hparams_view and b"train/loss" in hparams_view


@pytest.mark.slow
def test_final_evaluation_when_steps_are_not_a_multiple_of_the_interval(tmp_path):
    result = run_script("train.py", "model=bigram", f"hydra.run.dir={tmp_path}", *TINY, "trainer.max_steps=25")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 25
    val_loss = {step + 1: value for step, value, _ in load_run(tmp_path).scalars["val/loss"]}  # logged at step - 1
    assert list(val_loss) == [10, 20, 25]  # every 10 steps, then after the last
    assert metrics["final_val_loss"] == pytest.approx(val_loss[25])  # the final figures are step 25's


def test_accelerator_auto_is_recorded_as_the_device_it_chose(tmp_path):
    result = run_script("train.py", "model=bigram", "trainer.accelerator=auto", f"hydra.run.dir={tmp_path}", *TINY)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accelerator"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert metrics["device"] == (f"{torch.cuda.get_device_name(0)} x1" if torch.cuda.is_available() else "cpu, 1 thread")
    assert f"device: {metrics['device']}" in run_script("report.py", str(tmp_path)).stdout


@pytest.mark.slow
def test_bf16_autocast_with_gradient_clipping_trains(tmp_path):
    # Lightning refuses clipping with a fused optimizer under mixed precision: the optimizer falls back to foreach.
    result = run_script(
        "train.py", "model=v6", f"hydra.run.dir={tmp_path}", *TINY,
        "trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 20


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_each_experiment_trains(experiment, tmp_path):
    # Short windows and small batches: the GPU recipe's model then trains here in seconds too.
    small = ["data.batch_size=4", "data.block_size=16"]
    result = run_script("train.py", f"experiment={experiment}", f"hydra.run.dir={tmp_path}", *TINY, *small)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 20


@pytest.mark.parametrize("experiment, decays_vectors", [(None, True), ("nanogpt_cpu", False), ("nanogpt_gpu", False)])
def test_weight_decay_reaches_what_the_recipe_says(experiment, decays_vectors):
    """The lecture decays every parameter (torch's AdamW on model.parameters()); nanoGPT's
    recipes only 2-D weights, not biases or LayerNorm gains."""
    from hydra import compose, initialize_config_dir

    from shakegpt.data import CharTokenizer
    from shakegpt.training.optimizers import build_optimizer
    from shakegpt.training.run import build_model

    overrides = ["model=v7"] + ([f"experiment={experiment}"] if experiment else [])
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides)
    model = build_model(cfg, CharTokenizer("abcdefgh"), cfg.optimizer.lr)
    decay = {id(p): group["weight_decay"] for group in build_optimizer(model, model.hparams.optimizer).param_groups for p in group["params"]}
    assert len(decay) == len(list(model.parameters()))
    for name, p in model.named_parameters():
        expected = cfg.optimizer.weight_decay if p.dim() >= 2 or decays_vectors else 0.0
        assert decay[id(p)] == expected, name
    assert any(p.dim() < 2 for p in model.parameters())  # biases and gains are there to be left alone


def test_the_hparams_view_shows_what_shapes_the_result(tmp_path):
    from shakegpt.tools.bench import compose_config
    from shakegpt.training.loggers import hparams

    cfg = compose_config(["model=v6"], tmp_path)  # as @hydra.main hands it to train()
    shown = hparams(cfg, 1e-3)
    assert {"model.n_embd", "data.block_size", "optimizer.lr", "trainer.max_steps", "seed"} <= set(shown)
    assert not [k for k in shown if k.startswith(("callbacks.", "logger.")) or k.endswith("_target_")]


@pytest.mark.slow
def test_weight_averaging_is_a_callback_choice_whose_average_is_checkpointed_and_resumes(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    result = run_script("train.py", "callbacks=ema", "model=bigram", f"hydra.run.dir={first}", *TINY)
    assert result.returncode == 0, result.stderr
    checkpoint = torch.load(first / "checkpoints" / "best.ckpt", weights_only=True)  # saved mid-training
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert not all(torch.equal(averaged[k], raw[k]) for k in averaged)  # the average lags the raw weights
    result = run_script("train.py", "callbacks=ema", "model=bigram", f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}",
                        f"hydra.run.dir={second}", *TINY[1:], "trainer.max_steps=30")
    assert result.returncode == 0, result.stderr
    assert json.loads((second / "metrics.json").read_text())["steps"] == 30
