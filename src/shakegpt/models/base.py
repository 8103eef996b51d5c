"""What every version shares: the loss and generation.

A version subclasses LanguageModel and defines only its layers and forward(idx) -> logits. A
model is a plain torch module: loading, sampling and evaluating one import no training
machinery. Training mixes Lightning's steps in (shakegpt.training.module.trainable(V7)).
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from shakegpt.data.tokenizers import make_tokenizer
from shakegpt.models.kv_cache import CachedLogits


class LanguageModel(nn.Module):
    def __init__(self, vocab: str, block_size: int, tokenizer: str = "char", **training):
        """vocab: the tokenizer's symbols, one string; tokenizer: which kind (char or byte).
        training: the optimizer and scheduler settings of a model built to train, passed on to
        the training steps mixed in after it (shakegpt.training.module.TrainingSteps)."""
        try:
            super().__init__(**training)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__} takes no {', '.join(training)}: those are training settings, taken by "
                f"shakegpt.training.module.trainable({type(self).__name__})"
            ) from None
        self.tokenizer = make_tokenizer(tokenizer, vocab)
        self.block_size = block_size

    @property
    def device(self) -> torch.device:  # where the weights are, as a LightningModule tells it
        return next(self.parameters()).device

    def forward(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:  # (B, T) -> (B, T, vocab)
        """start: the position of idx's first token; above 0 only for a KV cache's steps
        (shakegpt.models.kv_cache), whose attention layers hold the positions before it."""
        raise NotImplementedError

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self(idx)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    @torch.inference_mode()  # no_grad, and no version counters either: a cached step is mostly overhead
    def stream(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        kv_cache: bool = True,
    ) -> Iterator[torch.Tensor]:
        """Yield (B, 1) next tokens one at a time, each sampled from the last block_size tokens.
        kv_cache: run each new token alone against the keys and values kept so far
        (shakegpt.models.kv_cache); the same tokens as kv_cache=False, the lecture's loop."""
        next_logits = CachedLogits(self) if kv_cache else lambda idx: self(idx[:, -self.block_size :])[:, -1]
        try:
            for _ in range(max_new_tokens):
                next_token = self.sample_next(next_logits(idx), temperature, top_k, generator)  # (B, 1)
                idx = torch.cat((idx, next_token), dim=1)
                yield next_token
        finally:  # also when the caller stops early: no cache stays on the model
            if kv_cache:
                next_logits.close()

    @staticmethod
    def sample_next(logits, temperature: float, top_k: int | None, generator) -> torch.Tensor:  # (B, vocab) -> (B, 1)
        # The likeliest at 0 (softmax does not change) and a divisor the logits' type can hold: a
        # tiny temperature then sends the others to -inf, greedy sampling, rather than to nan.
        divisor = max(temperature, torch.finfo(logits.dtype).tiny)
        logits = (logits - logits.amax(dim=-1, keepdim=True)) / divisor
        if top_k is not None:
            kth = torch.topk(logits, top_k).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)

    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
        """idx (B, T) extended by max_new_tokens sampled tokens."""
        return torch.cat([idx, *self.stream(idx, max_new_tokens, **kwargs)], dim=1)
