"""v12: zero-initialised output projections. Each block starts as the identity.

The last matrix of each residual branch (the attention's proj and the feed-forward's down)
starts at zero, so at step 0 every block adds nothing and the model is the embedding and the
head alone; each branch then grows from there. Used by the modded-nanogpt speedrun (and, as
small or zero residual init, by Fixup, ReZero and muP). Same parameters as v11.
"""

from torch import nn

from shakegpt.models import v11


class V12(v11.V11):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for block in self.body:
            nn.init.zeros_(block.proj.weight)  # its bias is zero since v7
            nn.init.zeros_(block.ffwd.down.weight)  # SwiGLU's has none
