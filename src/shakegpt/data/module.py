"""A prepared corpus as the lecture's batches: a LightningDataModule."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from shakegpt.common.config import check_positive_int
from shakegpt.common.errors import UserError
from shakegpt.data.batches import EvalBatches, TrainBatches
from shakegpt.data.corpus import prepare_corpus
from shakegpt.data.splits import parse_fractions

# The splits every evaluation scores, in the order of val_dataloader's loaders.
EVAL_SPLITS = ("train", "val")


class CorpusDataModule(L.LightningDataModule):
    """Tiny Shakespeare (or any text file) as character or byte tokens, memory-mapped from the
    corpus cache: the first 90% to train, the last 10% to validate, unless data.splits says."""

    def __init__(
        self,
        path: str | None = None,
        batch_size: int = 32,
        block_size: int = 8,
        eval_iters: int = 200,
        splits=(0.9, 0.1, 0.0),
        tokenizer: str = "char",
        cache_dir: str | None = None,
        seed: int = 1337,
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("block_size", block_size), ("eval_iters", eval_iters)):
            check_positive_int(f"data.{name}", value)
        self.batch_size, self.block_size, self.eval_iters, self.seed = batch_size, block_size, eval_iters, seed
        self.corpus = prepare_corpus(path, tokenizer, cache_dir and Path(cache_dir), parse_fractions(splits))
        self.tokenizer = self.corpus.tokenizer
        self.train_data, self.val_data = self.corpus.split("train"), self.corpus.split("val")
        shortest = min(len(self.train_data), len(self.val_data))
        if block_size >= shortest:
            raise UserError(
                f"data.block_size={block_size} needs splits longer than that, but the smaller split has {shortest} tokens"
            )

    def _position(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 0
        return self.trainer.global_rank, self.trainer.global_step

    def _train_position(self) -> tuple[int, int]:
        """(rank, batches drawn before this step): a step takes accumulate_grad_batches of them."""
        rank, step = self._position()
        return rank, step * (self.trainer.accumulate_grad_batches if self.trainer else 1)

    def train_dataloader(self) -> DataLoader:
        batches = TrainBatches(self.train_data, self.batch_size, self.block_size, self.seed, self._train_position)
        # Its own generator: a loader's iterator otherwise draws its seed from the global RNG,
        # which dropout uses, and a resumed run creates its iterators at other times.
        return DataLoader(batches, batch_size=None, generator=torch.Generator())

    def val_dataloader(self) -> list[DataLoader]:
        """Two loaders: the lecture estimates the loss on both splits at every evaluation."""
        data = {"train": self.train_data, "val": self.val_data}
        return [
            DataLoader(
                EvalBatches(
                    data[split], self.batch_size, self.block_size, self.eval_iters, self.seed, split_id, self._position,
                    len(self.tokenizer),
                ),
                batch_size=None,
                generator=torch.Generator(),
            )
            for split_id, split in enumerate(EVAL_SPLITS)
        ]
