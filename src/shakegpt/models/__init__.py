"""The lecture's model progression, one module per version; each shows only what it changes.

bigram -> v2 (attention; v3 is v2 with more heads, config only) -> v3_ff (feed-forward) -> v4
(blocks) -> v5 (residuals, projection, 4x feed-forward) -> v6 (pre-LayerNorm) -> v7 (dropout).
A version subclasses the one before and overrides the method that makes a part (make_attention,
make_ffwd, make_block, make_final_norm) or adds layers to its own Block. v7.py's docstring writes
out the whole forward pass; `python -m shakegpt.tools.model_diff v5 v6` lists what a step changes.
"""
