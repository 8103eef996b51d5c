"""The optimizer and schedule a model trains with, built from its settings (config groups
optimizer/ and scheduler/), and the optimizers those can name besides torch's own.

The model only holds the settings, as plain values; this module turns them into torch objects,
so that loading or sampling a model imports none of it.

MuonWithAdamW (optimizer=muon): torch.optim.Muon on the hidden 2-D weights, torch.optim.AdamW on
everything else (embeddings, lm_head, biases, LayerNorm), as one torch Optimizer, so Lightning's
automatic optimization, checkpoints, resume and the LambdaLR schedule see a single optimizer.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from hydra.utils import get_class, instantiate

from shakegpt.common.config import (
    check_fraction,
    check_non_negative,
    check_non_negative_int,
    check_positive,
    check_positive_int,
)
from shakegpt.common.errors import UserError
from shakegpt.training.schedules import make_scheduler
from shakegpt.training.torch_private import muon_newton_schulz, muon_orthogonalises_with


def check_optimizer_numbers(optimizer) -> None:
    """The optimizer group's numbers a user may type (lr is checked apart: it may be 'auto'),
    for the keys the chosen optimizer has, so that a typo is one line rather than torch's error."""
    for key in ("weight_decay", "muon_weight_decay"):
        if key in optimizer:
            check_non_negative(f"optimizer.{key}", optimizer[key])
    if "muon_lr" in optimizer:
        check_positive("optimizer.muon_lr", optimizer.muon_lr)
    if "momentum" in optimizer:
        check_fraction("optimizer.momentum", optimizer.momentum)
    if "momentum_start" in optimizer:
        check_fraction("optimizer.momentum_start", optimizer.momentum_start)
    if "ns_steps" in optimizer:
        check_positive_int("optimizer.ns_steps", optimizer.ns_steps)
    if "momentum_warmup_steps" in optimizer:
        check_non_negative_int("optimizer.momentum_warmup_steps", optimizer.momentum_warmup_steps)
    betas = optimizer.get("betas")
    if betas is not None:
        if isinstance(betas, str) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise UserError(f"optimizer.betas must be two numbers in [0, 1), e.g. [0.9,0.99], got {betas}")
        for beta in betas:
            check_fraction("each of optimizer.betas", beta)


def optimizer_and_schedule(model) -> dict:
    """What the model's configure_optimizers returns: the optimizer its hparams.optimizer names,
    its rate scaled at every step by the hparams.scheduler schedule. Attached to the model by
    shakegpt.training.run.build_model."""
    trainer = model.trainer
    # Lightning refuses gradient clipping under mixed precision when the optimizer unscales
    # gradients itself, as fused ones do: there the update runs as foreach.
    clipped_mixed = bool(trainer.gradient_clip_val) and "mixed" in str(trainer.precision)
    optimizer = build_optimizer(model, model.hparams.optimizer, fused=not clipped_mixed)
    schedule = make_scheduler(optimizer, trainer.max_steps, **(model.hparams.scheduler or {}))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def build_optimizer(model: torch.nn.Module, settings: dict | None, fused: bool = True) -> torch.optim.Optimizer:
    """The optimizer settings (config group optimizer/, as a plain dict) name, over the model's
    parameters, without its schedule: the range test sets the rate itself. fused=False turns a
    fused update into torch's foreach one. optimizer=muon: Muon on muon_parameters(model),
    AdamW (these settings) on the rest."""
    settings = dict(settings or {"_target_": "torch.optim.AdamW", "lr": 1e-3})
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])
    if not fused and settings.get("fused"):
        settings |= {"fused": False, "foreach": True}
    extra = {}
    if issubclass(get_class(settings["_target_"]), MuonWithAdamW):
        muon = muon_parameters(model)
        if not muon:
            raise UserError(
                f"optimizer=muon needs hidden weight matrices, and {type(model).__name__} has none: use optimizer=adamw"
            )
        extra["muon_params"] = list(muon.values())
    exclude = {id(p) for p in extra.get("muon_params", ())}
    groups = parameter_groups(model, settings.pop("weight_decay", 0.0), settings.pop("decay", "all"), exclude)
    return instantiate(settings, params=groups, **extra, _convert_="all")


def muon_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The hidden 2-D weights optimizer=muon hands to Muon, by name: every trainable matrix
    but the embeddings (token, position) and lm_head, i.e. the attention and feed-forward
    Linear weights. Muon orthogonalises a matrix's update, which suits weights that map
    features to features; the input and output layers (and all 1-D parameters) stay on AdamW."""
    outer = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    if isinstance(getattr(model, "lm_head", None), torch.nn.Module):
        outer |= {id(p) for p in model.lm_head.parameters()}
    return {
        name: p
        for name, p in model.named_parameters()
        if p.requires_grad and p.dim() == 2 and id(p) not in outer
    }


def parameter_groups(model: torch.nn.Module, weight_decay: float, decay: str, exclude: set[int] = frozenset()) -> list[dict]:
    """decay=all: one group, as the lecture. decay=matrices (nanoGPT): weight decay on 2-D
    weights only; it shrinks what multiplies activations, while decaying biases and
    LayerNorm gains only pulls them away from their useful values. exclude: ids of
    parameters another optimizer takes (Muon's)."""
    if decay not in ("all", "matrices"):
        raise UserError(f"optimizer.decay must be all or matrices, got {decay}")
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in exclude]
    if decay == "all":
        return [{"params": params, "weight_decay": weight_decay}]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


class MuonWithAdamW(torch.optim.Optimizer):
    """Two torch optimizers behind one: `param_groups` is Muon's groups then AdamW's (the very
    same dicts), so a schedule or the range test that sets group["lr"] sets both rates, each
    from its own base rate. state_dict() is {"muon": ..., "adamw": ...}.

    params: AdamW's parameter groups (with their weight_decay); lr and the remaining keyword
    arguments (betas, eps, fused, foreach) are AdamW's. muon_params: the 2-D hidden weights;
    muon_lr, muon_weight_decay, momentum, nesterov, ns_steps, adjust_lr_fn are Muon's.
    """

    def __init__(
        self,
        params: Iterable,
        muon_params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        muon_lr: float = 0.02,
        muon_weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        momentum_warmup_steps: int = 0,
        momentum_start: float = 0.85,
        **adamw: Any,
    ):
        if "betas" in adamw:
            adamw["betas"] = tuple(adamw["betas"])
        self.muon = torch.optim.Muon(
            list(muon_params),
            lr=muon_lr,
            weight_decay=muon_weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
        )
        self.adamw = torch.optim.AdamW(params, lr=lr, **adamw)
        self.momentum, self.momentum_start, self.momentum_warmup_steps = momentum, momentum_start, momentum_warmup_steps
        self.steps = 0  # updates taken, for the momentum warm-up; checkpointed with the state
        # Registers the inner optimizers' own group dicts (no copies), and the step hooks
        # Lightning and the LR schedulers rely on.
        super().__init__(self.muon.param_groups + self.adamw.param_groups, defaults={})

    # The inner optimizers hold the state. A merged view for readers (Lightning moves the state
    # to the device through it, in place); Optimizer.__init__'s empty assignment is ignored.
    @property
    def state(self) -> dict:
        return {**self.muon.state, **self.adamw.state}

    @state.setter
    def state(self, value) -> None:
        pass

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.momentum_warmup_steps:
            for group in self.muon.param_groups:
                group["momentum"] = self.warmed_up_momentum()
        with muon_orthogonalises_with(_newton_schulz):
            self.muon.step()
        self.adamw.step()
        self.steps += 1
        return loss

    def warmed_up_momentum(self) -> float:
        """Muon's momentum at this step: momentum_start rising linearly to momentum."""
        done = min(self.steps / self.momentum_warmup_steps, 1.0)
        return self.momentum_start + done * (self.momentum - self.momentum_start)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict(), "steps": self.steps}

    def load_state_dict(self, state_dict: dict) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        self.steps = state_dict.get("steps", 0)  # absent from checkpoints written before the warm-up
        # Loading replaces the inner group dicts: point at the new ones (the schedule reads
        # optimizer.param_groups afresh at every step).
        self.param_groups = self.muon.param_groups + self.adamw.param_groups


def _newton_schulz(grad: torch.Tensor, ns_coefficients, ns_steps: int, eps: float) -> torch.Tensor:
    """Muon's orthogonalisation, in float32 on a CPU; torch's own (bfloat16) elsewhere. Small
    bfloat16 matmuls suit GPUs, but on CPUs they are many times slower than float32 ones."""
    if grad.device.type != "cpu":
        return muon_newton_schulz(grad, ns_coefficients, ns_steps, eps)
    a, b, c = ns_coefficients
    wide = grad.float() if grad.size(0) <= grad.size(1) else grad.float().T  # (rows <= cols)
    x = wide / wide.norm().clamp(min=eps)  # spectral norm at most 1
    for _ in range(ns_steps):  # x <- a x + (b G + c G^2) x, G = x x^T: singular values towards 1
        gram = x @ x.T
        # Three products and no separate scalings: 1.3-1.5x faster at these sizes (288 x 96: 0.98 ms
        # against 1.43 per call), the orthogonalisation took a fifth of each training step of experiment=cpu_sprint.
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b G + c G^2
        x = torch.addmm(x, polynomial, x, beta=a)
    return x if grad.size(0) <= grad.size(1) else x.T
