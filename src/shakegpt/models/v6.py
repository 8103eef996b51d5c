"""v6: pre-LayerNorm. Normalise each sub-layer's input, and the features before lm_head."""

from torch import nn

from shakegpt.models import v5


class Block(v5.Block):
    def __init__(self, sa: nn.Module, ffwd: nn.Module, n_embd: int):
        super().__init__(sa, ffwd, n_embd)
        self.ln1 = nn.LayerNorm(n_embd)  # before attention
        self.ln2 = nn.LayerNorm(n_embd)  # before the feed-forward

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_embd)
        x = x + self.proj(self.sa(self.ln1(x)))
        return x + self.ffwd(self.ln2(x))


class V6(v5.V5):
    def make_block(self) -> nn.Module:
        return Block(self.make_attention(), self.make_ffwd(), self.n_embd)

    def make_final_norm(self) -> nn.Module:  # ln_f, before lm_head
        return nn.LayerNorm(self.n_embd)
