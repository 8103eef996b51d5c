"""v16: U-net skip connections. The first half's block outputs feed the second half's inputs.

    for i, block in enumerate(body):              # half = n_layer / 2
        if i >= half:                             # the second half, in the reverse order:
            x = x + skip_weights[i - half] * skips.pop()   # block half - 1's output into block half, ...
        x = block(x)
        if i < half:
            skips.append(x)

As a U-net pairs its encoder's layers with its decoder's, the last block of the first half hands
its output to the first block of the second half, and the first block to the last. Each pair
has one learned weight, 1 at the start. The late layers, which predict the next character, get
the early layers' token-level features without those having to survive every block between.
The modded-nanogpt speedrun took it in one record after soft-capping and the value residual.
model.n_layer must be even: every block of the first half has its partner.

The whole model in one view, in the order forward runs it (C = n_embd; on the right, the version
that added each part; v7.py's docstring has the parts up to the lecture):

    x = token_embedding(idx)                      # (B, T, C)             bigram; no position table from v8
    for i, block in enumerate(body):              # n_layer blocks        v4
        x = x + skip_weights[i - half] * skips.pop()  if i >= half        v16
        q, k, v = qkv(ln1(x))                     # (B, nh, T, hs) each   v2; ln1 v6, an RMSNorm from v11
        v = (1 - value_mix) * v + value_mix * v_first  if i > 0           v15 (v_first: block 0's v)
        q, k = rotary(q_norm(q)), rotary(k_norm(k))                      # rotary v8; q_norm, k_norm v10
        a = softmax(q k^T / sqrt(hs), causal) v   # (B, T, C)             v2; scaled by hs (v2's fix)
        x = x + proj_dropout(proj(a))             # proj v5, zero at the start from v12; dropout v7
        h = ln2(x)                                # an RMSNorm from v11
        x = x + ffwd_dropout(down(relu(up(h)) ** 2))   # up C -> 4C, down 4C -> C (zero at the start): v13
        skips.append(x)  if i < half                                     v16
    logits = lm_head(ln_f(x))                     # (B, T, vocab)         ln_f an RMSNorm from v11
    logits = logit_cap * tanh(logits / logit_cap) # each in (-cap, cap)   v14

`python -m shakegpt.tools.model_diff v16` lists every module at the sizes of conf/model/v16.yaml;
tests/test_beyond_models.py checks this forward pass.
"""

import torch
from torch import nn

from shakegpt.common.errors import UserError
from shakegpt.models import v15


class UNetStack(v15.ValueResidualStack):
    """v15's blocks with the skips: block half - 1 - j's output into block half + j's input."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__(blocks)
        self.skip_weights = nn.Parameter(torch.ones(len(blocks) // 2))

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_embd)
        half, skips, v_first = len(self) // 2, [], None
        for i, block in enumerate(self):
            if i >= half:
                x = x + self.skip_weights[i - half] * skips.pop()
            x, v_first = block(x, v_first)
            if i < half:
                skips.append(x)
        return x


class V16(v15.V15):
    def make_body(self) -> nn.Module:
        if self.n_layer % 2:
            raise UserError(
                f"v16's U-net pairs each block of the first half with one of the second: model.n_layer={self.n_layer} must be even"
            )
        return UNetStack(list(super().make_body()))
