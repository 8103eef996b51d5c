"""Sampling with a KV cache: each new token runs the model on its one position.

Without a cache, every new token re-runs the model over the last block_size tokens (the lecture's
generate), recomputing the keys and values of every position already seen. With one, each
attention layer keeps those keys and values (KVCache, on the layer while a stream runs, litgpt's
way; never during training and never in a state_dict or checkpoint), and a step computes only
the newest position's. The tokens are the same as the lecture's loop gives: the prompt runs
through the model once, as it would without a cache, and each later position sees exactly the
keys and values the full forward would compute for it (up to float rounding: attention over one
query sums in another order than over all of them, about 1e-7 of a logit in float32, which moves
a sampled token only when a draw falls that close to the edge between two; tests compare in
float64, where it is never seen).

Past block_size the lecture crops the context to its last block_size tokens: the window slides
and every position in it moves by one.
- Learned positions (v2 to v7): every key and value depends on its position, so a slid window
  shares nothing with the cached one: each later token runs the full forward over the window,
  exactly as without a cache (no faster there).
- Rotary positions (v8 on): q . k depends only on the distance between positions, so the
  first layer's keys would survive the slide. The second layer's would not: a position's first
  layer output mixed in the token that just left the window. A sliding cache is exact for a
  one-layer model only, so these too run the full window per token past block_size.
The speedup is for the tokens up to block_size: a short prompt and block_size new tokens gain the
most, a prompt already block_size long gains nothing.

A cached step multiplies one row by each weight matrix, so on a CPU its time is the time to read
the weights from memory. How fast depends on how a matrix is laid out: on this project's CPU a
widening Linear (qkv, the feed-forward's first layer) reads about 1.6x faster stored transposed,
a narrowing one faster as it is (docs/sampling.md). While the caches are on, widening weights are
stored transposed (WidenedByColumns): the same values and shape, so only the summing order moves.
"""

from __future__ import annotations

import torch
from torch import nn


class KVCache:
    """One attention layer's keys and values of the positions seen so far, (B, n_head, length,
    head_size) each, in buffers of `capacity` positions allocated at the first add (of the keys'
    batch, dtype and device)."""

    def __init__(self, capacity: int):
        self.capacity, self.length = capacity, 0
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def add(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k and v, (B, nh, T, hs) each; every key and value so far, (B, nh, length, hs)."""
        T = k.shape[2]
        if self.length and T > 1 or self.length + T > self.capacity:  # CachedLogits never asks this
            raise RuntimeError(f"a KV cache of {self.capacity} takes a prompt once, then one position at a time")
        if self.keys is None:
            shape = (k.shape[0], k.shape[1], self.capacity, k.shape[3])
            self.keys, self.values = k.new_empty(shape), v.new_empty(shape)
        end = self.length + T
        self.keys[:, :, self.length : end] = k
        self.values[:, :, self.length : end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """Every attention layer: v2's CausalSelfAttention and its subclasses each have a kv_cache slot."""
    return [module for module in model.modules() if hasattr(module, "kv_cache")]


class WidenedByColumns:
    """While it is on, every widening CPU Linear's weight (out_features > in_features) keeps its
    values and shape but is stored transposed, column by column; restore() puts back the tensor
    each had. Measured on this project's 2-core CPU, a one-row product by a 1152 x 384 weight took
    129 us stored by columns against 216 us by rows; a 384 x 1536 one 183 us by rows against 268."""

    def __init__(self, model: nn.Module):
        self.kept: list[tuple[nn.Parameter, torch.Tensor]] = []
        for module in model.modules():
            weight = getattr(module, "weight", None)
            # A weight tied to two layers is transposed once: the second finds it non-contiguous.
            if isinstance(module, nn.Linear) and module.out_features > module.in_features \
                    and weight.device.type == "cpu" and weight.is_contiguous():
                self.kept.append((weight, weight.data))
                weight.data = weight.data.t().contiguous().t()

    def restore(self) -> None:
        for weight, data in self.kept:
            weight.data = data
        self.kept = []


class CachedLogits:
    """next_logits(idx): the logits of the token after idx (B, L), as the lecture's
    model(idx[:, -block_size:])[:, -1] computes them, from a KV cache on each attention layer
    while L fits block_size. Call it with idx growing by one token at a time; close() (or the
    first L past block_size) takes the caches off the model and puts its weights back as they
    were. One at a time per model."""

    def __init__(self, model):
        self.model = model
        self.layers = attention_layers(model)
        for layer in self.layers:
            layer.kv_cache = KVCache(model.block_size)
        self.by_columns = WidenedByColumns(model)
        self.seen = 0  # how many tokens of idx the caches hold

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, vocab)
        block_size = self.model.block_size
        if idx.shape[1] > block_size:
            # The window slides and every position in it moves: the full forward, as the lecture's.
            self.close()
            return self.model(idx[:, -block_size:])[:, -1]
        # forward itself: eager even when the run compiled the model, whose graph has no cache.
        logits = self.model.forward(idx[:, self.seen :], start=self.seen)[:, -1]
        self.seen = idx.shape[1]
        return logits

    def close(self) -> None:
        for layer in self.layers:
            layer.kv_cache = None
        self.layers = []
        self.by_columns.restore()
