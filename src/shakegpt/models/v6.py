"""v6: pre-LayerNorm. Normalise each sub-layer's input, and the features before lm_head."""

from torch import nn

from shakegpt.models import v5


class Block(v5.Block):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__(n_embd, n_head)
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_embd)
        x = x + self.proj(self.sa(self.ln1(x)))
        return x + self.ffwd(self.ln2(x))


class V6(v5.V5):
    def make_block(self) -> nn.Module:
        return Block(self.n_embd, self.n_head)

    def make_final_norm(self) -> nn.Module:
        return nn.LayerNorm(self.n_embd)
