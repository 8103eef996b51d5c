"""v13: a ReLU^2 feed-forward instead of v12's SwiGLU.

One projection up to 4 n_embd, relu(h)^2 elementwise, one projection back down: the nanoGPT
shape with the ReLU squared. So et al. (2021, "Primer") found squared ReLU among the best
activations for language models; the modded-nanogpt speedrun uses it in this shape (up, relu^2,
down, no biases, the down projection zero-initialised, as v12 does to SwiGLU's). Two matrices of
4C x C hold as many weights as SwiGLU's three of 8C/3 x C: the parameter count is v12's.

    ffwd(x) = down(relu(up(x)) ** 2)              # (B, T, C) -> (B, T, 4C) -> (B, T, C)

Untied embedding and head, another of the speedrun's changes, needs no version here: every
version since v2 has its own token_embedding and lm_head, never sharing a matrix.
"""

import torch.nn.functional as F
from torch import nn

from shakegpt.models import v12


class ReLUSquared(nn.Module):
    def __init__(self, n_embd: int):
        super().__init__()
        self.up = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.down = nn.Linear(4 * n_embd, n_embd, bias=False)  # zeroed by V12.__init__

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_embd)
        return self.down(F.relu(self.up(x)).square())


class V13(v12.V12):
    def make_ffwd(self) -> nn.Module:
        return ReLUSquared(self.n_embd)
