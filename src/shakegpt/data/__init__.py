"""Corpora as tokens: prepared once into a memory-mapped cache (corpus), characters or bytes
(tokenizers), cut into train/val/test (splits), drawn as the lecture's batches (batches) by a
LightningDataModule (module)."""

from shakegpt.data.batches import EvalBatches, TrainBatches, mix_seed, random_windows
from shakegpt.data.corpus import DEFAULT_CORPUS, decode_utf8, prepare_corpus, read_bytes, read_corpus
from shakegpt.data.module import EVAL_SPLITS, CorpusDataModule
from shakegpt.data.splits import SPLITS, parse_fractions, split_bounds
from shakegpt.data.tokenizers import ByteTokenizer, CharTokenizer, make_tokenizer

__all__ = [
    "DEFAULT_CORPUS", "EVAL_SPLITS", "SPLITS", "ByteTokenizer", "CharTokenizer", "CorpusDataModule", "EvalBatches",
    "TrainBatches",
    "decode_utf8", "make_tokenizer", "mix_seed", "parse_fractions", "prepare_corpus", "random_windows",
    "read_bytes", "read_corpus", "split_bounds",
]
