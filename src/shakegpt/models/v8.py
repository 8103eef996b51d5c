"""v8: rotary position embeddings (RoPE). Positions enter attention by rotating q and k instead
of being added to the input as a learned table.

Each head's q and k are cut into pairs of features; pair i at position t is rotated by the angle
t * base^(-2i / head_size). The dot product of a rotated q at position t with a rotated k at
position s then depends on t - s only: attention sees relative positions, in every layer, with
no weights to learn. From RoFormer (Su et al., 2021); GPT-NeoX, Llama and the modded-nanogpt
speedrun use it. The learned position table (block_size x n_embd) is gone.

    x = token_embedding(idx)                      # (B, T, C): no position_embedding any more
    q, k, v = heads(x)                            # each (B, nh, T, hs)
    q, k = rotary(q), rotary(k)                   # new: rotated by position
"""

import torch
from torch import nn

from shakegpt.common.errors import UserError
from shakegpt.models import v7
from shakegpt.models.v2 import CausalSelfAttention


class Rotary(nn.Module):
    """Rotates feature pairs (i, i + hs/2) of (B, nh, T, hs) by angles growing with the position."""

    def __init__(self, head_size: int, block_size: int, base: float = 10_000.0):
        super().__init__()
        self.head_size, self.base = head_size, base
        inv_freq = base ** (-torch.arange(0, head_size, 2).float() / head_size)  # (hs/2,)
        angles = torch.outer(torch.arange(block_size).float(), inv_freq)  # (block_size, hs/2)
        # Not saved: computed from the sizes, so checkpoints hold the same weights as v7's minus a table.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def extra_repr(self) -> str:
        return f"head_size={self.head_size}, base={self.base:g}"

    def forward(self, x, start: int = 0):  # (B, nh, T, hs) at positions start.. -> (B, nh, T, hs)
        T, half = x.shape[2], self.head_size // 2
        cos, sin = self.cos[start : start + T].to(x.dtype), self.sin[start : start + T].to(x.dtype)  # (T, hs/2)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class RotaryAttention(CausalSelfAttention):
    def __init__(self, n_embd: int, n_head: int, head_size: int, dropout: float, block_size: int, scale: float | None = None):
        super().__init__(n_embd, n_head, head_size, dropout, scale)
        self.rotary = Rotary(head_size, block_size)

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_head * head_size)
        q, k, v = self.heads(x)
        start = self.cached_length()  # x's first position: after those a KV cache holds, else 0
        return self.attend(self.rotary(q, start), self.rotary(k, start), v)


class V8(v7.V7):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.head_size % 2:
            raise UserError(f"v8's rotary embedding turns pairs of features: head_size {self.head_size} must be even")
        del self.position_embedding  # positions now enter through the rotation of q and k

    def make_attention(self) -> nn.Module:
        return RotaryAttention(self.n_embd, self.n_head, self.head_size, self.dropout, self.block_size, self.attention_scale)

    def forward(self, idx, start: int = 0):  # (B, T) -> (B, T, vocab); each attention layer rotates from start
        return self.lm_head(self.ln_f(self.body(self.token_embedding(idx))))
