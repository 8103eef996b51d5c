"""v10: QK-norm. An RMSNorm on each head's queries and keys before the rotation.

Unnormalised q and k can grow until softmax saturates: a few logits dominate, gradients
vanish, and higher learning rates diverge. Normalising each head's q and k bounds q . k / sqrt(hs)
(Dehghani et al. 2023, "Scaling Vision Transformers to 22B"; OLMo 2, the modded-nanogpt speedrun).
RMSNorm divides by the root mean square and scales: x / rms(x) * weight, over head_size.

    q, k = rotary(q_norm(q)), rotary(k_norm(k))   # q_norm, k_norm: RMSNorm over head_size
"""

from torch import nn

from shakegpt.models import v9
from shakegpt.models.v8 import RotaryAttention


class QKNormAttention(RotaryAttention):
    def __init__(self, n_embd: int, n_head: int, head_size: int, dropout: float, block_size: int, scale: float | None = None):
        super().__init__(n_embd, n_head, head_size, dropout, block_size, scale)
        self.q_norm = nn.RMSNorm(head_size)
        self.k_norm = nn.RMSNorm(head_size)

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_head * head_size)
        q, k, v = self.heads(x)
        start = self.cached_length()
        return self.attend(self.rotary(self.q_norm(q), start), self.rotary(self.k_norm(k), start), v)


class V10(v9.V9):
    def make_attention(self) -> nn.Module:
        return QKNormAttention(self.n_embd, self.n_head, self.head_size, self.dropout, self.block_size, self.attention_scale)
