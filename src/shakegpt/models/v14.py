"""v14: logit soft-capping. The logits pass through cap * tanh(logits / cap).

Near zero tanh is the identity, so small logits are unchanged; large ones bend smoothly towards
+-cap and can never pass it. A model cannot then push a few logits ever higher to win the last
bits of loss on the training text, an overconfidence that a 1 MB corpus invites. From Gemma 2;
the modded-nanogpt speedrun added it at 30 and later lowered it to 15.

The cap is model.logit_cap, 15 by default, the speedrun's later value, kept for 65 characters
rather than scaled: what a cap costs is the best probability it still allows one character,
1 / (1 + (V - 1) e^(-2 cap)) for a vocabulary of V; at V = 65 and cap 15 that is 1 - 6e-12, so
the cap never stops a confident prediction, and only bounds how far logits drift (with 50,257
tokens the same cap costs no more: (V - 1) e^(-30) is still 5e-9).

    logits = logit_cap * tanh(lm_head(ln_f(x)) / logit_cap)   # (B, T, vocab), each in (-cap, cap)
"""

import torch

from shakegpt.common.config import check_positive
from shakegpt.models import v13


class V14(v13.V13):
    def __init__(self, *args, logit_cap: float = 15.0, **kwargs):
        check_positive("model.logit_cap", logit_cap)
        super().__init__(*args, **kwargs)
        self.logit_cap = float(logit_cap)

    def extra_repr(self) -> str:  # print(model) and model_diff show the cap, which holds no weights
        return f"logit_cap={self.logit_cap:g}"

    def forward(self, idx, start: int = 0):  # (B, T) -> (B, T, vocab), each logit in (-cap, cap)
        return self.logit_cap * torch.tanh(super().forward(idx, start) / self.logit_cap)
