"""The corpus cache: prepared once, memory-mapped after; characters or bytes; splits."""

import hashlib
import json
import math
import subprocess
import sys

import pytest
import torch

from shakegpt.common.errors import UserError
from shakegpt.data import (
    ByteTokenizer,
    CorpusDataModule,
    EvalBatches,
    TrainBatches,
    parse_fractions,
    prepare_corpus,
    split_bounds,
)
from shakegpt.data.corpus import token_dtype

# Multi-byte characters, and one outside the Basic Multilingual Plane (4 bytes in UTF-8).
MIXED = "Ünïcödé: 世界 — 🎭 and plain ASCII.\n" * 40


@pytest.fixture
def mixed(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text(MIXED, encoding="utf-8")
    return path


def test_char_tokens_round_trip_multi_byte_and_astral_characters(mixed, tmp_path):
    corpus = prepare_corpus(mixed, "char", tmp_path / "cache")
    assert corpus.tokenizer.chars == "".join(sorted(set(MIXED)))
    assert len(corpus.tokens) == len(MIXED)  # one token per character, 🎭 included
    assert corpus.tokenizer.decode(corpus.tokens) == MIXED
    assert corpus.tokenizer.encode("🎭 世界") == [corpus.tokenizer.chars.index(c) for c in "🎭 世界"]


def test_byte_tokens_round_trip_any_file(mixed, tmp_path):
    corpus = prepare_corpus(mixed, "byte", tmp_path / "cache")
    assert bytes(corpus.tokens.tolist()) == MIXED.encode("utf-8")
    assert corpus.tokenizer.decode(corpus.tokens) == MIXED
    assert len(corpus.tokenizer) == 256 and corpus.meta["dtype"] == "uint8"
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 4)  # NUL bytes and invalid UTF-8: fine as bytes
    assert bytes(prepare_corpus(binary, "byte", tmp_path / "cache").tokens.tolist()) == bytes(range(256)) * 4


def test_byte_decoding_never_fails_on_what_a_model_generates():
    tokenizer = ByteTokenizer()
    assert tokenizer.decode([0xF0, 0x9F]) == "\ufffd"  # a character cut short
    decode = tokenizer.stream_decoder()
    pieces = [decode([b]) for b in "é🎭".encode("utf-8")]  # one byte at a time, as sampling streams
    assert "".join(pieces) == "é🎭" and pieces[0] == ""  # é is written once its second byte arrives
    assert decode([0xFF]) + decode([0xE4, 0xB8]) + decode([], final=True) == "\ufffd\ufffd"


def test_the_token_type_fits_the_vocabulary(tmp_path):
    assert [token_dtype(n) for n in (2, 256, 257, 65_536, 65_537)] == ["uint8", "uint8", "uint16", "uint16", "uint32"]
    wide = tmp_path / "wide.txt"
    wide.write_text("".join(map(chr, range(0x4E00, 0x4E00 + 300))) * 3, encoding="utf-8")
    corpus = prepare_corpus(wide, "char", tmp_path / "cache")
    assert corpus.meta["dtype"] == "uint16" and corpus.tokens.dtype == torch.uint16
    assert corpus.tokenizer.decode(corpus.tokens[:300]) == "".join(map(chr, range(0x4E00, 0x4E00 + 300)))


def test_metadata_describes_the_source_and_its_splits(mixed, tmp_path):
    corpus = prepare_corpus(mixed, "char", tmp_path / "cache", (0.9, 0.05, 0.05))
    meta = json.loads((corpus.directory / "meta.json").read_text())
    assert meta["size"] == mixed.stat().st_size
    assert meta["sha256"] == hashlib.sha256(mixed.read_bytes()).hexdigest()
    assert meta["vocab"] == corpus.tokenizer.chars and meta["n_tokens"] == len(MIXED)
    n = len(MIXED)
    assert meta["splits"]["0.9/0.05/0.05"] == {
        "train": [0, int(0.9 * n)], "val": [int(0.9 * n), n - int(0.05 * n)], "test": [n - int(0.05 * n), n]
    }


def test_a_second_run_reuses_the_cache(mixed, tmp_path, capsys):
    prepare_corpus(mixed, "char", tmp_path / "cache")
    assert "preparing" in capsys.readouterr().out
    tokens = tmp_path / "cache" / next(p.name for p in (tmp_path / "cache").iterdir()) / "tokens.bin"
    written = tokens.stat().st_mtime_ns
    again = prepare_corpus(mixed, "char", tmp_path / "cache")
    assert "preparing" not in capsys.readouterr().out
    assert tokens.stat().st_mtime_ns == written and again.directory == tokens.parent


def test_a_changed_source_is_prepared_again(mixed, tmp_path):
    first = prepare_corpus(mixed, "char", tmp_path / "cache")
    mixed.write_text(MIXED + "new text, new characters: ßø\n", encoding="utf-8")
    second = prepare_corpus(mixed, "char", tmp_path / "cache")
    assert second.directory != first.directory
    assert "ß" in second.tokenizer.chars and second.tokenizer.decode(second.tokens).endswith("ßø\n")


@pytest.mark.parametrize("damage", ["truncated tokens", "garbage meta", "another corpus's meta"])
def test_a_corrupt_or_foreign_cache_entry_is_rebuilt(mixed, tmp_path, capsys, damage):
    corpus = prepare_corpus(mixed, "char", tmp_path / "cache")
    tokens, meta = corpus.directory / "tokens.bin", corpus.directory / "meta.json"
    if damage == "truncated tokens":
        tokens.write_bytes(tokens.read_bytes()[:10])
    elif damage == "garbage meta":
        meta.write_text("{not json")
    else:
        meta.write_text(json.dumps(json.loads(meta.read_text()) | {"sha256": "0" * 64}))
    capsys.readouterr()
    again = prepare_corpus(mixed, "char", tmp_path / "cache")
    message = capsys.readouterr().err
    assert f"the corpus cache {corpus.directory}" in message and "preparing it again" in message
    assert again.tokenizer.decode(again.tokens) == MIXED


def test_split_boundaries():
    assert split_bounds(1000, (0.9, 0.1, 0.0)) == {"train": (0, 900), "val": (900, 1000), "test": (1000, 1000)}
    assert split_bounds(100_000_000, (0.9, 0.05, 0.05)) == {
        "train": (0, 90_000_000), "val": (90_000_000, 95_000_000), "test": (95_000_000, 100_000_000)
    }
    assert parse_fractions("0.9,0.05,0.05") == parse_fractions([0.9, 0.05, 0.05]) == (0.9, 0.05, 0.05)
    assert parse_fractions([0.8, 0.2]) == (0.8, 0.2, 0.0)


@pytest.mark.parametrize("value", [[0.9, 0.2], [1.0, 0.0], "0.9;0.1", [0.5, 0.6, -0.1], "abc", 0.9])
def test_bad_splits_are_one_line(value):
    with pytest.raises(UserError, match="data.splits must"):
        parse_fractions(value)


def test_the_datamodule_cuts_train_val_test_in_order(mixed, tmp_path):
    dm = CorpusDataModule(path=str(mixed), block_size=4, splits="0.9,0.05,0.05", cache_dir=str(tmp_path / "c"))
    whole = dm.corpus.tokens
    n = len(whole)
    assert torch.equal(torch.cat([dm.train_data, dm.val_data, dm.corpus.split("test")]), whole)
    assert (len(dm.train_data), len(dm.val_data)) == (int(0.9 * n), n - int(0.9 * n) - int(0.05 * n))


def digest(stream, n: int) -> str:
    h = hashlib.sha256()
    for _ in range(n):
        x, y = next(stream)
        h.update(x.numpy().tobytes() + y.numpy().tobytes())
    return h.hexdigest()


def test_tiny_shakespeare_batches_are_the_ones_from_before_the_token_file():
    """Digests of int64 batches drawn by the datamodule that encoded the corpus into a tensor
    in memory, before the memory-mapped token file: every figure in docs/ depends on them."""
    dm = CorpusDataModule(batch_size=32, block_size=64, seed=1337)
    assert dm.train_data.dtype == torch.uint8  # the map, not an in-memory copy
    first = iter(TrainBatches(dm.train_data, 32, 64, 1337, lambda: (0, 0)))
    later = iter(TrainBatches(dm.train_data, 32, 64, 1337, lambda: (1, 500)))
    evaluation = iter(EvalBatches(dm.val_data, 32, 64, 200, 1337, 1, lambda: (0, 3000)))
    assert digest(first, 20) == "eec8def3f00fa79eedbfc5c1513570eed452cf80658fccdb47cd8f46e9d582bc"
    assert digest(later, 20) == "122b887ad6ba6f46b0eab83949412000c6ad5d8ec81ba6ff70550a02ec90c016"
    assert digest(evaluation, 1) == "b39ec666fbfd3188d6a0b28aa0364bf670098e5a0a5de3b2f6f2d3ac8bb30943"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.mkdir(), "cannot read corpus"),
        (lambda p: None, "cannot read corpus"),
        (lambda p: p.write_bytes(b"caf\xe9 latin-1"), r"not UTF-8 text \(bad byte at offset 3\)"),
    ],
)
def test_bad_corpora_are_one_line(tmp_path, make, message):
    path = tmp_path / "corpus.txt"
    make(path)
    with pytest.raises(UserError, match=message):
        prepare_corpus(path, "char", tmp_path / "cache")


def test_an_unusable_cache_directory_is_one_line(mixed, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="cannot use the corpus cache .*set data.cache_dir"):
        prepare_corpus(mixed, "char", blocker / "cache")


def test_bpc_is_the_loss_over_ln_2(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["final_val_bpc"] == pytest.approx(metrics["final_val_loss"] / math.log(2), rel=1e-6)
    assert metrics["best_val_bpc"] == pytest.approx(metrics["best_val_loss"] / math.log(2), rel=1e-6)


def test_bpc_is_logged_beside_loss_in_tensorboard(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained_run))
    events.Reload()
    for split in ("train", "val"):
        loss = [e.value for e in events.Scalars(f"{split}/loss")]
        bpc = [e.value for e in events.Scalars(f"{split}/bpc")]
        assert bpc == pytest.approx([v / math.log(2) for v in loss], rel=1e-5)


@pytest.mark.slow
def test_a_byte_model_trains_samples_and_scores_its_test_split(mixed, tmp_path):
    from tests.helpers import TINY, run_script

    run = tmp_path / "run"
    trained = run_script(
        "train.py", "model=v2", f"data.path={mixed}", "data.tokenizer=byte", "data.splits=[0.8,0.1,0.1]",
        f"hydra.run.dir={run}", *TINY,
    )
    assert trained.returncode == 0, trained.stderr
    ckpt = run / "checkpoints" / "last.ckpt"
    sampled = run_script("sample.py", f"ckpt={ckpt}", "prompt=🎭 世", "max_new_tokens=50")
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stdout.startswith("🎭 世")
    evaluate = [sys.executable, "-m", "shakegpt.evaluate", f"ckpt={ckpt}", "split=test"]
    refused = subprocess.run(evaluate, capture_output=True, text=True)  # the run's corpus lies outside the working directory
    assert refused.returncode == 2 and refused.stderr == (
        f"error: the run of {ckpt} was trained on {mixed}, outside this directory; to score on that file, pass "
        "corpus=<its path> (a run directory from elsewhere does not choose which files are read)\n"
    )
    scored = subprocess.run([*evaluate, f"corpus={mixed}"], capture_output=True, text=True)
    assert scored.returncode == 0, scored.stderr
    assert "bits per byte" in scored.stdout and f"all {int(0.1 * len(MIXED.encode())) - 1:,} positions" in scored.stdout


def test_a_large_vocabulary_evaluates_in_smaller_chunks_of_the_same_batches():
    """Thousands of characters make each position's logits large: evaluation batches then come
    in more, smaller chunks (about 64 MB of logits each), drawing the same windows."""
    data = torch.arange(10_000, dtype=torch.int32)
    small = list(EvalBatches(data, 32, 64, 20, 1337, 1, lambda: (0, 0), vocab_size=65))
    large = list(EvalBatches(data, 32, 64, 20, 1337, 1, lambda: (0, 0), vocab_size=7_000))
    assert len(small) == 1 and len(large) == 20  # 65,536 * 256 / 7,000 logits: one batch of 32 x 64 a chunk
    assert torch.equal(torch.cat([x for x, _ in large]), small[0][0])


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_a_prepare_cut_short_leaves_no_partial_file_and_the_next_run_prepares_again(mixed, tmp_path, monkeypatch, stop):
    from shakegpt.data import corpus as corpus_module

    real = corpus_module.write_tokens

    def stopped(source, out, *args):
        out.write(b"half")
        raise stop

    monkeypatch.setattr(corpus_module, "write_tokens", stopped)
    if isinstance(stop, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            prepare_corpus(mixed, "char", tmp_path / "cache")
    else:
        with pytest.raises(UserError, match="No space left on device; set data.cache_dir"):
            prepare_corpus(mixed, "char", tmp_path / "cache")
    entry = next((tmp_path / "cache").iterdir())
    assert sorted(p.name for p in entry.iterdir()) == ["lock"]
    monkeypatch.setattr(corpus_module, "write_tokens", real)
    again = prepare_corpus(mixed, "char", tmp_path / "cache")
    assert again.tokenizer.decode(again.tokens) == MIXED
