"""v7: dropout, so the model can be scaled up (6 layers of 384) without overfitting.

Dropout on the attention weights and on both residual branches, and the lecture's final
weight initialisation (normal, std 0.02).
"""

from torch import nn

from shakegpt.models import v6


class Block(v6.Block):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__(n_embd, n_head)
        self.sa.dropout = dropout
        self.drop = nn.Dropout(dropout)

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_embd)
        x = x + self.drop(self.proj(self.sa(self.ln1(x))))
        return x + self.drop(self.ffwd(self.ln2(x)))


class V7(v6.V6):
    HAS_DROPOUT = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.apply(init_weights)

    def make_block(self) -> nn.Module:
        return Block(self.n_embd, self.n_head, self.dropout)


def init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
