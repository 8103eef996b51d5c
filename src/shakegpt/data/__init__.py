"""Corpora as tokens: prepared once into a memory-mapped cache (corpus), characters or bytes
(tokenizers), cut into train/val/test (splits), drawn as the lecture's batches (batches) by a
LightningDataModule (module, loaded when first asked for)."""

from shakegpt.data.batches import EvalBatches, TrainBatches, mix_seed, random_windows
from shakegpt.data.corpus import DEFAULT_CORPUS, decode_utf8, prepare_corpus, read_bytes, read_corpus
from shakegpt.data.splits import SPLITS, parse_fractions, split_bounds
from shakegpt.data.tokenizers import ByteTokenizer, CharTokenizer, make_tokenizer


def __getattr__(name: str):
    """CorpusDataModule and EVAL_SPLITS on first use: the module is Lightning's, which sampling,
    evaluation and loading a checkpoint (shakegpt.data.tokenizers) never import."""
    if name in ("CorpusDataModule", "EVAL_SPLITS"):
        from shakegpt.data import module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CORPUS", "EVAL_SPLITS", "SPLITS", "ByteTokenizer", "CharTokenizer", "CorpusDataModule", "EvalBatches",
    "TrainBatches",
    "decode_utf8", "make_tokenizer", "mix_seed", "parse_fractions", "prepare_corpus", "random_windows",
    "read_bytes", "read_corpus", "split_bounds",
]
