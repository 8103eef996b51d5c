"""v7: dropout, so the model can be scaled up (6 layers of 384) without overfitting.

Dropout on the attention weights and on both residual branches. As in the video, the weights keep
PyTorch's default initialisation and attention scores are scaled by n_embd**-0.5; the lecture's
repository later changed both (model.init=normal, model.attention_scale=head_size: see v2.py,
and the guide's section on the two fixes, which measures what each does at v7's shape).

The whole model in one view, in the order forward runs it (C = n_embd; on the right, the
version that added each part):

    x = token_embedding(idx)                      # (B, T) -> (B, T, C)   bigram; C wide from v2
    x = x + position_embedding(arange(T))         # (B, T, C)             v2
    for block in body:                            # n_layer blocks        v4
        x = x + proj_dropout(proj(sa(ln1(x))))    # (B, T, C)   sa v2; x + and proj v5; ln1 v6; dropout v7
        x = x + ffwd_dropout(ffwd(ln2(x)))        # (B, T, C)   ffwd v3_ff; x + v5; ln2 v6; dropout v7
    logits = lm_head(ln_f(x))                     # (B, T, vocab)         lm_head v2; ln_f v6

sa: causal self-attention, n_head heads of head_size = C / n_head from one bias-free qkv Linear;
softmax(q k^T / sqrt(C)) over the current and earlier positions (/ sqrt(head_size) with
attention_scale=head_size), dropout on those weights (v7), times v. ffwd: Linear(C, 4C), ReLU,
Linear(4C, C) (v3_ff's was Linear(C, C), ReLU). Weights as PyTorch initialises them (embeddings
normal(0, 1), Linear uniform within 1/sqrt(fan_in)); normal(0, 0.02) and biases 0 with init=normal.
`python -m shakegpt.tools.model_diff v7` lists every module
at the sizes of conf/model/v7.yaml; tests/test_models.py checks this forward pass.
"""

from torch import nn

from shakegpt.models import v6
from shakegpt.models.v2 import CausalSelfAttention


class Block(v6.Block):
    def __init__(self, sa: nn.Module, ffwd: nn.Module, n_embd: int, dropout: float):
        super().__init__(sa, ffwd, n_embd)
        self.proj_dropout = nn.Dropout(dropout)  # on the attention's residual branch
        self.ffwd_dropout = nn.Dropout(dropout)  # on the feed-forward's

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_embd)
        x = x + self.proj_dropout(self.proj(self.sa(self.ln1(x))))
        return x + self.ffwd_dropout(self.ffwd(self.ln2(x)))


class V7(v6.V6):
    HAS_DROPOUT = True

    def make_attention(self) -> nn.Module:  # dropout on the attention weights too
        return CausalSelfAttention(self.n_embd, self.n_head, self.head_size, self.dropout, scale=self.attention_scale)

    def make_block(self) -> nn.Module:
        return Block(self.make_attention(), self.make_ffwd(), self.n_embd, self.dropout)

