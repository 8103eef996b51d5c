"""The lecture's batches: random windows of a split for training, and its loss estimate.

Every batch is a pure function of (seed, rank, step): a run that resumes at step N draws exactly
the batches an uninterrupted run would have drawn, with no sampler state to save.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterator

import torch
from torch.utils.data import IterableDataset

# Evaluation batches are stacked into chunks of at most this many tokens, so a tiny model
# evaluates its 200 batches in one forward pass and a large one stays within memory; with a
# large vocabulary (thousands of characters), fewer, so the chunk's logits stay near 64 MB.
EVAL_CHUNK_TOKENS = 65_536
EVAL_CHUNK_LOGITS = 65_536 * 256


def mix_seed(*parts: int) -> int:
    """One 63-bit generator seed from several integers (seed, rank, step, ...)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def random_windows(
    data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The lecture's get_batch: random contiguous windows x and the same shifted by one, y.
    data: a 1-D tensor of tokens, of any integer type (a view of the token file)."""
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    index = starts[:, None] + torch.arange(block_size + 1)  # (B, T+1)
    window = data[index].long()  # the token file's narrow type, widened for the embedding
    return window[:, :-1], window[:, 1:]


class TrainBatches(IterableDataset):
    """Endless training batches; batch k is drawn from a generator seeded by (seed, rank, k)."""

    def __init__(self, data, batch_size, block_size, seed, position: Callable[[], tuple[int, int]]):
        self.data, self.batch_size, self.block_size, self.seed = data, batch_size, block_size, seed
        self.position = position  # -> (rank, first step), read when iteration starts

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, step = self.position()
        generator = torch.Generator()
        while True:
            generator.manual_seed(mix_seed(self.seed, rank, step))
            yield random_windows(self.data, self.batch_size, self.block_size, generator)
            step += 1


class EvalBatches(IterableDataset):
    """eval_iters fresh random batches of one split, as the lecture's estimate_loss, stacked
    into chunks so they run in a few forward passes instead of one by one."""

    def __init__(self, data, batch_size, block_size, eval_iters, seed, split_id, position, vocab_size=256):
        self.data, self.batch_size, self.block_size, self.vocab_size = data, batch_size, block_size, vocab_size
        self.eval_iters, self.seed, self.split_id, self.position = eval_iters, seed, split_id, position

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, step = self.position()
        generator = torch.Generator().manual_seed(mix_seed(self.seed, rank, step, self.split_id))
        chunk_tokens = min(EVAL_CHUNK_TOKENS, EVAL_CHUNK_LOGITS // self.vocab_size)
        per_chunk = max(1, chunk_tokens // (self.batch_size * self.block_size))
        remaining = self.eval_iters
        while remaining > 0:
            n = min(per_chunk, remaining)
            yield random_windows(self.data, n * self.batch_size, self.block_size, generator)
            remaining -= n
