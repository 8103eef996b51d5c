import pytest
import torch

from shakegpt.common.errors import UserError
from shakegpt.data import CharTokenizer, CorpusDataModule, TrainBatches, random_windows, read_corpus


@pytest.fixture(scope="module")
def shakespeare():
    return CorpusDataModule(batch_size=4, block_size=8)


def test_vocabulary_of_tiny_shakespeare(shakespeare):
    assert len(shakespeare.tokenizer) == 65
    assert shakespeare.tokenizer.chars[0] == "\n"


def test_encode_decode_round_trip(shakespeare):
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    tokens = shakespeare.tokenizer.encode(text)
    assert all(0 <= t < 65 for t in tokens)
    assert shakespeare.tokenizer.decode(tokens) == text


def test_unknown_character_is_named():
    with pytest.raises(UserError, match="'z'"):
        CharTokenizer("abc").encode("abz")


def test_split_is_first_90_percent_train_last_10_val(shakespeare):
    n = 1_115_394
    assert len(shakespeare.train_data) == int(0.9 * n)
    assert len(shakespeare.train_data) + len(shakespeare.val_data) == n
    text = read_corpus(None)
    assert shakespeare.tokenizer.decode(shakespeare.val_data[:50]) == text[int(0.9 * n) : int(0.9 * n) + 50]


def test_batches_are_windows_with_targets_shifted_by_one(shakespeare):
    data = shakespeare.train_data
    x, y = random_windows(data, 4, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])
    # each row is a contiguous slice of the data followed by its next character
    full = torch.cat([x, y[:, -1:]], dim=1)
    text = shakespeare.tokenizer.decode(data.tolist())
    for row in full:
        assert shakespeare.tokenizer.decode(row.tolist()) in text


def batches(dm, rank, start, n):
    stream = iter(TrainBatches(dm.train_data, dm.batch_size, dm.block_size, dm.seed, lambda: (rank, start)))
    return [next(stream)[0] for _ in range(n)]


def test_batches_depend_only_on_seed_rank_and_step(shakespeare):
    from_zero = batches(shakespeare, rank=0, start=0, n=5)
    from_three = batches(shakespeare, rank=0, start=3, n=2)
    assert torch.equal(from_zero[3], from_three[0]) and torch.equal(from_zero[4], from_three[1])
    assert not torch.equal(from_zero[0], from_zero[1])
    assert not torch.equal(from_zero[0], batches(shakespeare, rank=1, start=0, n=1)[0])


def test_other_corpus(tmp_path):
    corpus = tmp_path / "abc.txt"
    corpus.write_text("abcab" * 100)
    dm = CorpusDataModule(path=str(corpus), batch_size=2, block_size=4)
    assert dm.tokenizer.chars == "abc"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"\x00\x01\x02binary", "binary"),
        (b"caf\xe9 latin-1", "not UTF-8"),
        (b"aaaaaaaaaaaa", "only 1 distinct character"),
    ],
)
def test_bad_corpus_is_one_clear_error(tmp_path, content, message):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    with pytest.raises(UserError, match=message):
        CorpusDataModule(path=str(corpus))


def test_missing_corpus(tmp_path):
    with pytest.raises(UserError, match="cannot read corpus"):
        CorpusDataModule(path=str(tmp_path / "nope.txt"))


def test_block_size_larger_than_validation_split(tmp_path):
    corpus = tmp_path / "small.txt"
    corpus.write_text("hello world, " * 10)
    with pytest.raises(UserError, match="block_size=64"):
        CorpusDataModule(path=str(corpus), block_size=64)
