"""Training FLOPs per token, the estimate bench, race and reports share."""

from __future__ import annotations


def flops_per_token(params: int | None, config: dict) -> float | None:
    """Training FLOPs per token, estimated as nanoGPT does: 6 per parameter plus attention's
    12 * layers * width * context. None without a parameter count."""
    if params is None:
        return None
    model = config.get("model", {})
    width = model.get("n_embd", 0)
    layers = model.get("n_layer", 1 if width else 0)
    return 6 * params + 12 * layers * width * config.get("data", {}).get("block_size", 0)
