"""Character vocabulary and the lecture's batches as a LightningDataModule.

Every batch is a pure function of (seed, rank, step): a run that resumes at step N draws exactly
the batches an uninterrupted run would have drawn, with no sampler state to save.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from shakegpt.common.config import check_fraction, check_positive_int
from shakegpt.common.errors import UserError
from shakegpt.common.paths import PROJECT_ROOT

DEFAULT_CORPUS = PROJECT_ROOT / "data" / "tinyshakespeare.txt"
DEFAULT_CORPUS_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

# Evaluation batches are stacked into chunks of at most this many tokens, so a tiny model
# evaluates its 200 batches in one forward pass and a large one stays within memory.
EVAL_CHUNK_TOKENS = 65_536


class Vocabulary:
    """The sorted set of characters of a corpus; a token is a character's index."""

    def __init__(self, chars: str):
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise UserError(f"characters not in the model's vocabulary: {', '.join(map(repr, unknown))}")
        return [self.stoi[ch] for ch in text]

    def decode(self, tokens) -> str:
        return "".join(self.chars[int(t)] for t in tokens)


def split_tokens(tokens: torch.Tensor, train_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val): the first train_fraction of the corpus and the rest, as the lecture cuts it."""
    n_train = int(train_fraction * len(tokens))
    return tokens[:n_train], tokens[n_train:]


def read_bytes(path: Path, what: str) -> bytes:
    """A file the user named (what: 'corpus', 'prompt file'), or one line saying why not."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None


def decode_utf8(raw: bytes, path: Path, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not UTF-8 text (bad byte at offset {exc.start})") from None


def read_corpus(path: str | Path | None) -> str:
    """The corpus text; the shipped Tiny Shakespeare (checksum-verified) when path is None."""
    corpus = Path(path) if path is not None else DEFAULT_CORPUS
    raw = read_bytes(corpus, "corpus")
    if path is None and hashlib.sha256(raw).hexdigest() != DEFAULT_CORPUS_SHA256:
        raise UserError(f"{corpus} is not the shipped Tiny Shakespeare (sha256 mismatch)")
    if not raw:
        raise UserError(f"corpus {corpus} is empty")
    if b"\x00" in raw:
        raise UserError(f"corpus {corpus} looks binary (contains NUL bytes), expected UTF-8 text")
    return decode_utf8(raw, corpus, "corpus")


def mix_seed(*parts: int) -> int:
    """One 63-bit generator seed from several integers (seed, rank, step, ...)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def random_windows(
    data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The lecture's get_batch: random contiguous windows x and the same shifted by one, y."""
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    index = starts[:, None] + torch.arange(block_size + 1)  # (B, T+1)
    window = data[index]
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

    def __init__(self, data, batch_size, block_size, eval_iters, seed, split_id, position):
        self.data, self.batch_size, self.block_size = data, batch_size, block_size
        self.eval_iters, self.seed, self.split_id, self.position = eval_iters, seed, split_id, position

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, step = self.position()
        generator = torch.Generator().manual_seed(mix_seed(self.seed, rank, step, self.split_id))
        per_chunk = max(1, EVAL_CHUNK_TOKENS // (self.batch_size * self.block_size))
        remaining = self.eval_iters
        while remaining > 0:
            n = min(per_chunk, remaining)
            yield random_windows(self.data, n * self.batch_size, self.block_size, generator)
            remaining -= n


class CharDataModule(L.LightningDataModule):
    """Tiny Shakespeare (or any UTF-8 text) as character tokens: first 90% train, last 10% val."""

    def __init__(
        self,
        path: str | None = None,
        batch_size: int = 32,
        block_size: int = 8,
        eval_iters: int = 200,
        train_fraction: float = 0.9,
        seed: int = 1337,
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("block_size", block_size), ("eval_iters", eval_iters)):
            check_positive_int(f"data.{name}", value)
        check_fraction("data.train_fraction", train_fraction, low_open=True)
        self.batch_size, self.block_size, self.eval_iters, self.seed = batch_size, block_size, eval_iters, seed
        text = read_corpus(path)
        self.vocab = Vocabulary.from_text(text)
        if len(self.vocab) < 2:
            raise UserError(f"the corpus has only {len(self.vocab)} distinct character; a language model needs at least 2")
        tokens = torch.tensor(self.vocab.encode(text), dtype=torch.long)
        self.train_data, self.val_data = split_tokens(tokens, train_fraction)
        shortest = min(len(self.train_data), len(self.val_data))
        if block_size >= shortest:
            raise UserError(
                f"data.block_size={block_size} needs splits longer than that, but the smaller split has {shortest} characters"
            )

    def _position(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 0
        return self.trainer.global_rank, self.trainer.global_step

    def train_dataloader(self) -> DataLoader:
        batches = TrainBatches(self.train_data, self.batch_size, self.block_size, self.seed, self._position)
        # Its own generator: a loader's iterator otherwise draws its seed from the global RNG,
        # which dropout uses, and a resumed run creates its iterators at other times.
        return DataLoader(batches, batch_size=None, generator=torch.Generator())

    def val_dataloader(self) -> list[DataLoader]:
        """Two loaders: the lecture estimates the loss on both splits at every evaluation."""
        return [
            DataLoader(
                EvalBatches(data, self.batch_size, self.block_size, self.eval_iters, self.seed, split_id, self._position),
                batch_size=None,
                generator=torch.Generator(),
            )
            for split_id, data in enumerate((self.train_data, self.val_data))
        ]
