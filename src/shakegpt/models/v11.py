"""v11: RMSNorm instead of LayerNorm (ln1, ln2 and ln_f).

LayerNorm subtracts each token's mean and divides by its standard deviation, then scales and
shifts. RMSNorm only divides by the root mean square and scales: no mean, no bias. Zhang and
Sennrich (2019) found the re-centring adds little; Llama and the modded-nanogpt speedrun use
RMSNorm. Fewer operations per norm, and n_embd fewer weights in each (the bias).

    x = x + proj_dropout(proj(sa(ln1(x))))        # ln1, ln2, ln_f: x / rms(x) * weight
"""

from torch import nn

from shakegpt.models import v7, v10


class Block(v7.Block):
    def __init__(self, sa: nn.Module, ffwd: nn.Module, n_embd: int, dropout: float):
        super().__init__(sa, ffwd, n_embd, dropout)
        self.ln1 = nn.RMSNorm(n_embd)
        self.ln2 = nn.RMSNorm(n_embd)


class V11(v10.V10):
    def make_block(self) -> nn.Module:
        return Block(self.make_attention(), self.make_ffwd(), self.n_embd, self.dropout)

    def make_final_norm(self) -> nn.Module:
        return nn.RMSNorm(self.n_embd)
