"""Optimizers the config group optimizer/ can name besides torch's own.

MuonWithAdamW (optimizer=muon): torch.optim.Muon on the hidden 2-D weights, torch.optim.AdamW on
everything else (embeddings, lm_head, biases, LayerNorm), as one torch Optimizer, so Lightning's
automatic optimization, checkpoints, resume and the LambdaLR schedule see a single optimizer.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable

import torch
import torch.optim._muon as torch_muon

from shakegpt.common.config import check_fraction, check_non_negative, check_positive, check_positive_int
from shakegpt.common.errors import UserError


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
    if "ns_steps" in optimizer:
        check_positive_int("optimizer.ns_steps", optimizer.ns_steps)
    betas = optimizer.get("betas")
    if betas is not None:
        if isinstance(betas, str) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise UserError(f"optimizer.betas must be two numbers in [0, 1), e.g. [0.9,0.99], got {betas}")
        for beta in betas:
            check_fraction("each of optimizer.betas", beta)


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
        with float32_newton_schulz_on_cpu():
            self.muon.step()
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        # Loading replaces the inner group dicts: point at the new ones (the schedule reads
        # optimizer.param_groups afresh at every step).
        self.param_groups = self.muon.param_groups + self.adamw.param_groups


_bfloat16_newton_schulz = torch_muon._zeropower_via_newtonschulz


def _newton_schulz(grad: torch.Tensor, ns_coefficients, ns_steps: int, eps: float) -> torch.Tensor:
    """Muon's orthogonalisation, in float32 on a CPU; torch's own (bfloat16) elsewhere. Small
    bfloat16 matmuls suit GPUs, but on CPUs they are many times slower than float32 ones."""
    if grad.device.type != "cpu":
        return _bfloat16_newton_schulz(grad, ns_coefficients, ns_steps, eps)
    a, b, c = ns_coefficients
    wide = grad.float() if grad.size(0) <= grad.size(1) else grad.float().T  # (rows <= cols)
    x = wide / wide.norm().clamp(min=eps)  # spectral norm at most 1
    for _ in range(ns_steps):  # x <- a x + (b G + c G^2) x, G = x x^T: singular values towards 1
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if grad.size(0) <= grad.size(1) else x.T


@contextlib.contextmanager
def float32_newton_schulz_on_cpu():
    """torch.optim.Muon's steps inside orthogonalise through _newton_schulz."""
    torch_muon._zeropower_via_newtonschulz = _newton_schulz
    try:
        yield
    finally:
        torch_muon._zeropower_via_newtonschulz = _bfloat16_newton_schulz
