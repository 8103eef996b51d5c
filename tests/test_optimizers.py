"""optimizer=muon: Muon on the hidden matrices, AdamW on the rest, as one optimizer that the
schedule, checkpoints and resume treat like any other."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning import Trainer
from omegaconf import OmegaConf

from shakegpt.common.errors import UserError
from shakegpt.data import CharTokenizer, read_corpus
from shakegpt.training.lr_finder import lr_range_test
from shakegpt.training.module import instantiate_trainable
from shakegpt.training.optimizers import MuonWithAdamW, build_optimizer, optimizer_and_schedule
from shakegpt.training.schedules import make_scheduler
from tests.helpers import ROOT, TINY, loss_before_and_after, run_script

VOCAB = CharTokenizer.from_text(read_corpus(None)).chars
SMALL = ["model.n_embd=32", "model.n_head=4", "model.n_layer=2", "data.block_size=16"]


def build(*overrides: str, version: str = "v7", **optimizer):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        sizes = SMALL if version == "v7" else []
        cfg = compose("config", overrides=[f"model={version}", "optimizer=muon", *sizes, *overrides])
    settings = OmegaConf.to_container(cfg.optimizer, resolve=True) | optimizer
    torch.manual_seed(0)
    return instantiate_trainable(cfg.model, vocab=VOCAB, optimizer=settings)


def optimizer_of(model, fused: bool = True):
    return build_optimizer(model, model.hparams.optimizer, fused=fused)


def names(model, params) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_the_model_trains_with_the_optimizer_the_training_side_attaches():
    model = build("optimizer=adamw")
    with pytest.raises(RuntimeError, match="no optimizer attached"):
        model.configure_optimizers()
    model.trainer = Trainer(max_steps=10, logger=False, enable_checkpointing=False)
    model.optimizer_and_schedule = optimizer_and_schedule
    configured = model.configure_optimizers()
    assert isinstance(configured["optimizer"], torch.optim.AdamW)
    assert configured["lr_scheduler"]["interval"] == "step"
    assert "optimizer_and_schedule" not in model.hparams  # checkpoints keep plain values only


def test_muon_takes_exactly_the_hidden_matrices_and_adamw_the_rest():
    model = build()
    optimizer = optimizer_of(model, fused=False)
    assert isinstance(optimizer, MuonWithAdamW)
    muon = [p for g in optimizer.muon.param_groups for p in g["params"]]
    adamw = [p for g in optimizer.adamw.param_groups for p in g["params"]]
    expected_muon = {
        f"body.{i}.{name}.weight" for i in range(2) for name in ("sa.qkv", "proj", "ffwd.0", "ffwd.2")
    }
    assert names(model, muon) == expected_muon
    assert names(model, adamw) == {name for name, _ in model.named_parameters()} - expected_muon
    assert {"token_embedding.weight", "position_embedding.weight", "lm_head.weight"} <= names(model, adamw)
    assert all(p.dim() == 2 for p in muon)
    # every parameter exactly once, and the outer param_groups are the inner ones
    everything = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(everything) == len({id(p) for p in everything}) == len(list(model.parameters()))
    assert optimizer.param_groups == optimizer.muon.param_groups + optimizer.adamw.param_groups
    assert [g["lr"] for g in optimizer.muon.param_groups] == [0.02]
    assert {g["lr"] for g in optimizer.adamw.param_groups} == {3e-4}  # v7.yaml's optimizer.lr
    assert "fused" not in optimizer.muon.defaults and optimizer.adamw.defaults["foreach"]


def test_decay_matrices_applies_to_adamw_s_share_only():
    model = build("optimizer.decay=matrices", "optimizer.weight_decay=0.1")
    optimizer = optimizer_of(model)
    decays = {g["weight_decay"]: names(model, g["params"]) for g in optimizer.adamw.param_groups}
    assert decays[0.1] == {"token_embedding.weight", "position_embedding.weight", "lm_head.weight"}
    assert decays[0.0] == {name for name, p in model.named_parameters() if p.dim() == 1}
    assert {g["weight_decay"] for g in optimizer.muon.param_groups} == {0.0}  # muon_weight_decay


def test_a_model_without_hidden_matrices_is_refused():
    with pytest.raises(UserError, match="optimizer=muon needs hidden weight matrices"):
        optimizer_of(build(version="bigram"))


@pytest.mark.slow
def test_a_few_steps_lower_the_loss():
    model = build("model.dropout=0.0")
    initial, final = loss_before_and_after(model, optimizer_of(model), steps=25, batch=16, block=16)
    assert final < initial - 0.3


def test_the_schedule_scales_both_learning_rates():
    optimizer = optimizer_of(build(lr=1e-3))
    schedule = make_scheduler(optimizer, 100, name="cosine", warmup_steps=10, min_lr_ratio=0.1)
    for step in range(60):
        factor = schedule.lr_lambdas[0](step)
        assert optimizer.muon.param_groups[0]["lr"] == pytest.approx(0.02 * factor)
        assert optimizer.adamw.param_groups[0]["lr"] == pytest.approx(1e-3 * factor)
        optimizer.step()
        schedule.step()
    assert optimizer.muon.param_groups[0]["lr"] < 0.02 * 0.9  # decaying by step 60


def test_state_dict_round_trip_keeps_groups_shared():
    model = build()
    optimizer = optimizer_of(model)
    model.loss(*torch.randint(65, (2, 2, 16))).backward()
    optimizer.step()
    state = optimizer.state_dict()
    fresh = optimizer_of(build())
    fresh.load_state_dict(state)
    assert fresh.param_groups == fresh.muon.param_groups + fresh.adamw.param_groups
    assert all(a is b for a, b in zip(fresh.param_groups, fresh.muon.param_groups + fresh.adamw.param_groups))
    assert len(fresh.state) == len(list(model.parameters()))


def test_momentum_warm_up_rises_linearly_then_holds_and_resumes_where_it_was():
    model = build(momentum_warmup_steps=4, momentum_start=0.85)
    optimizer = optimizer_of(model)
    seen = []
    for _ in range(6):
        model.loss(*torch.randint(65, (2, 2, 16))).backward()
        optimizer.step()
        seen.append(optimizer.muon.param_groups[0]["momentum"])
    assert seen == pytest.approx([0.85, 0.875, 0.9, 0.925, 0.95, 0.95])
    fresh = optimizer_of(build(momentum_warmup_steps=4, momentum_start=0.85))
    fresh.load_state_dict(optimizer.state_dict())
    assert fresh.steps == 6 and fresh.warmed_up_momentum() == pytest.approx(0.95)


def test_without_warm_up_muon_s_momentum_stays_as_set():
    model = build()
    optimizer = optimizer_of(model)
    for _ in range(2):
        model.loss(*torch.randint(65, (2, 2, 16))).backward()
        optimizer.step()
    assert {g["momentum"] for g in optimizer.muon.param_groups} == {0.95}


def test_muon_weight_decay_shrinks_muon_s_matrices_only():
    """With every gradient zero, the update is the decay alone: p *= 1 - muon_lr * muon_weight_decay."""
    model = build(muon_weight_decay=0.5, weight_decay=0.0)
    optimizer = optimizer_of(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    muon = names(model, [p for g in optimizer.muon.param_groups for p in g["params"]])
    for name, p in model.named_parameters():
        factor = 1 - 0.02 * 0.5 if name in muon else 1.0
        torch.testing.assert_close(p.detach(), before[name] * factor)


@pytest.mark.parametrize("setting, value", [("momentum_warmup_steps", -1), ("momentum_start", 1.5)])
def test_a_bad_warm_up_setting_is_one_line(setting, value):
    from shakegpt.training.optimizers import check_optimizer_numbers

    with pytest.raises(UserError, match=f"optimizer.{setting}"):
        check_optimizer_numbers(OmegaConf.create({setting: value}))


def test_the_range_test_refuses_two_rates():
    with pytest.raises(UserError, match="sweeps one rate"):
        lr_range_test(build(), iter([]), steps=10)


@pytest.mark.slow
def test_train_py_with_muon_finishes_and_resumes(tmp_path):
    sizes = ["model=v7", "optimizer=muon", *SMALL, "data.batch_size=8", "scheduler=cosine", "scheduler.warmup_steps=5",
             "optimizer.momentum_warmup_steps=50"]
    first = tmp_path / "first"
    result = run_script("train.py", *sizes, *TINY, f"hydra.run.dir={first}")
    assert result.returncode == 0, result.stderr
    last = first / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    (optimizer_state,) = checkpoint["optimizer_states"]
    assert set(optimizer_state) == {"muon", "adamw", "steps"}
    assert checkpoint["global_step"] == optimizer_state["steps"] == 20

    second = tmp_path / "second"
    overrides = [*TINY, f"ckpt_path={last}", "trainer.max_steps=30", f"hydra.run.dir={second}"]
    result = run_script("train.py", *sizes, *overrides)
    assert result.returncode == 0, result.stderr
    resumed = torch.load(second / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["global_step"] == 30
    # the schedule went on from step 20: both rates are below their bases by the same factor
    muon_group = resumed["optimizer_states"][0]["muon"]["param_groups"][0]
    adamw_group = resumed["optimizer_states"][0]["adamw"]["param_groups"][0]
    assert muon_group["lr"] / muon_group["initial_lr"] == pytest.approx(adamw_group["lr"] / adamw_group["initial_lr"])
    assert muon_group["lr"] < muon_group["initial_lr"]
    # and so did Muon's momentum warm-up: the 30th update ran at 0.85 + 29/50 of the way to 0.95
    assert resumed["optimizer_states"][0]["steps"] == 30
    assert muon_group["momentum"] == pytest.approx(0.85 + 29 / 50 * 0.1)


@pytest.mark.slow
def test_lr_auto_with_muon_is_refused_in_one_line(tmp_path):
    result = run_script("train.py", "model=v7", "optimizer=muon", *SMALL, "optimizer.lr=auto", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2  # a user error
    assert "sweeps one rate" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("shape", [(24, 8), (8, 24)])
def test_on_a_cpu_muon_orthogonalises_in_float32_as_torch_does_in_bfloat16(shape):
    from shakegpt.training import optimizers
    from shakegpt.training.torch_private import muon_newton_schulz

    grad = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    settings = ((3.4445, -4.7750, 2.0315), 5, 1e-7)
    ours, torchs = optimizers._newton_schulz(grad, *settings), muon_newton_schulz(grad, *settings)
    assert ours.dtype == torch.float32 and ours.shape == grad.shape
    assert (ours - torchs.float()).norm() / torchs.float().norm() < 0.03  # bfloat16's rounding
    singular_values = torch.linalg.svdvals(ours)
    assert singular_values.min() > 0.5 and singular_values.max() < 1.5  # near-orthogonal, as Muon wants


def test_the_float32_orthogonalisation_is_used_inside_muon_s_step_only(monkeypatch):
    import torch.optim._muon as torch_muon

    from shakegpt.training import optimizers, torch_private

    seen, original = [], optimizers._newton_schulz
    monkeypatch.setattr(optimizers, "_newton_schulz", lambda grad, *args: seen.append(tuple(grad.shape)) or original(grad, *args))
    matrix = torch.nn.Parameter(torch.randn(6, 4))
    matrix.grad = torch.randn(6, 4)
    optimizer = MuonWithAdamW([torch.nn.Parameter(torch.zeros(3))], [matrix])
    optimizer.step()
    assert seen == [(6, 4)]
    assert torch_muon._zeropower_via_newtonschulz is torch_private.muon_newton_schulz  # torch's own again after the step
