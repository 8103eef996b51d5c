"""v4: communication (attention) then computation (feed-forward), stacked n_layer deep.

With no residual path this deep stack trains poorly: v5 fixes that.
"""

from torch import nn

from shakegpt.models.v2 import CausalSelfAttention
from shakegpt.models.v3_ff import V3FF


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.sa = CausalSelfAttention(n_embd, n_head, n_embd // n_head)
        self.ffwd = nn.Sequential(nn.Linear(n_embd, n_embd), nn.ReLU())

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_embd)
        return self.ffwd(self.sa(x))


class V4(V3FF):
    def make_body(self) -> nn.Module:
        return nn.Sequential(*[self.make_block() for _ in range(self.n_layer)])

    def make_block(self) -> nn.Module:
        return Block(self.n_embd, self.n_head)
