"""v5: residual connections, a projection after attention, and a 4x wider feed-forward.

Each sub-layer adds to a residual stream instead of replacing it, so gradients reach the
bottom of the stack unchanged.
"""

from torch import nn

from shakegpt.models import v4


class Block(v4.Block):
    def __init__(self, sa: nn.Module, ffwd: nn.Module, n_embd: int):
        super().__init__(sa, ffwd)
        self.proj = nn.Linear(n_embd, n_embd)  # the heads' concatenation, mixed, back into the stream

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_embd)
        x = x + self.proj(self.sa(x))  # each sub-layer adds to the residual stream x
        return x + self.ffwd(x)


class V5(v4.V4):
    def make_block(self) -> nn.Module:
        return Block(self.make_attention(), self.make_ffwd(), self.n_embd)

    def make_ffwd(self) -> nn.Module:  # (B, T, n_embd) -> (B, T, n_embd)
        hidden = 4 * self.n_embd  # 4x wider inside; the second Linear projects back into the stream
        return nn.Sequential(nn.Linear(self.n_embd, hidden), nn.ReLU(), nn.Linear(hidden, self.n_embd))
