"""v4: communication (attention) then computation (feed-forward), stacked n_layer deep.

With no residual path this deep stack trains poorly: v5 fixes that.
"""

from torch import nn

from shakegpt.models.v3_ff import V3FF


class Block(nn.Module):
    """sa: tokens gather from earlier tokens; ffwd: each token computes on what it gathered."""

    def __init__(self, sa: nn.Module, ffwd: nn.Module):
        super().__init__()
        self.sa = sa
        self.ffwd = ffwd

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_embd)
        return self.ffwd(self.sa(x))


class V4(V3FF):
    def make_body(self) -> nn.Module:
        return nn.Sequential(*[self.make_block() for _ in range(self.n_layer)])

    def make_block(self) -> nn.Module:  # v3_ff's two layers, now a block of their own
        return Block(self.make_attention(), self.make_ffwd())
