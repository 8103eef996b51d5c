"""v15: value residual. Every layer after the first mixes the first layer's values into its own.

    v = (1 - value_mix) * v + value_mix * v_first # in every layer but the first
                                                  # v_first: layer 0's values, (B, nh, T, hs)

Deeper layers' attention tends to concentrate on a few tokens and their values lose what the
token itself was; handing every layer the first layer's values keeps it within reach (Zhou et
al. 2024, "Value Residual Learning", ResFormer). value_mix is one learned number per layer,
0.5 at the start. The modded-nanogpt speedrun took it in with the same record as soft-capping;
later, at 12 layers, it gave way to value embeddings (extra token tables mixed into the values
of the first and last three layers). Here the residual fits better: in 4 layers every later
layer is near the first, and it costs n_layer - 1 numbers where each value table would cost
another vocab x n_embd embedding.

The mix is per position, before the KV cache stores the values: a cached step mixes its one
position's values exactly as the full forward mixes them all.
"""

import torch
from torch import nn

from shakegpt.models import v11, v14
from shakegpt.models.v10 import QKNormAttention


class ValueResidualAttention(QKNormAttention):
    def __init__(self, *args, first: bool, **kwargs):
        super().__init__(*args, **kwargs)
        # The first layer's values are the ones mixed in: it has nothing to mix.
        self.value_mix = None if first else nn.Parameter(torch.tensor(0.5))

    def forward(self, x, v_first=None):  # (B, T, n_embd) -> (B, T, n_head * head_size), v_first
        q, k, v = self.heads(x)
        if self.value_mix is None:
            v_first = v
        else:
            v = (1 - self.value_mix) * v + self.value_mix * v_first  # (B, nh, T, hs)
        start = self.cached_length()
        return self.attend(self.rotary(self.q_norm(q), start), self.rotary(self.k_norm(k), start), v), v_first


class Block(v11.Block):
    def forward(self, x, v_first=None):  # (B, T, n_embd) -> (B, T, n_embd), v_first
        out, v_first = self.sa(self.ln1(x), v_first)
        x = x + self.proj_dropout(self.proj(out))
        return x + self.ffwd_dropout(self.ffwd(self.ln2(x))), v_first


class ValueResidualStack(nn.ModuleList):
    """The blocks in order, the first one's values handed to every later one."""

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_embd)
        v_first = None
        for block in self:
            x, v_first = block(x, v_first)
        return x


class V15(v14.V14):
    def make_body(self) -> nn.Module:
        return ValueResidualStack([self.make_block(first=i == 0) for i in range(self.n_layer)])

    def make_block(self, first: bool) -> nn.Module:
        return Block(self.make_attention(first), self.make_ffwd(), self.n_embd, self.dropout)

    def make_attention(self, first: bool) -> nn.Module:
        return ValueResidualAttention(
            self.n_embd, self.n_head, self.head_size, self.dropout, self.block_size, self.attention_scale, first=first
        )
