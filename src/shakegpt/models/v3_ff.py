"""v3_ff: after attention gathers from other tokens, each token thinks on it alone.

Adds one per-token feed-forward layer (Linear + ReLU) after v3's multi-head attention.
"""

from torch import nn

from shakegpt.models.v2 import V2


class V3FF(V2):
    FREE_HEAD_SIZE = False

    def make_body(self) -> nn.Module:
        # One flat Sequential, so the layers keep their checkpoint names: body.0 attention, body.1 Linear.
        return nn.Sequential(self.make_attention(), *self.make_ffwd())

    def make_ffwd(self) -> nn.Module:  # (B, T, n_embd) -> (B, T, n_embd), each token on its own
        return nn.Sequential(nn.Linear(self.n_embd, self.n_embd), nn.ReLU())

    def body_width(self) -> int:
        return self.n_embd
