"""v5: residual connections, a projection after attention, and a 4x wider feed-forward.

Each sub-layer adds to a residual stream instead of replacing it, so gradients reach the
bottom of the stack unchanged.
"""

from torch import nn

from shakegpt.models import v4


class Block(v4.Block):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__(n_embd, n_head)
        self.proj = nn.Linear(n_embd, n_embd)
        self.ffwd = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.ReLU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_embd)
        x = x + self.proj(self.sa(x))
        return x + self.ffwd(x)


class V5(v4.V4):
    def make_block(self) -> nn.Module:
        return Block(self.n_embd, self.n_head)
