"""A corpus prepared once into a token file, memory-mapped by every later run.

The first run on a file encodes it, streaming, into `tokens.bin` (uint8 up to 256 symbols,
uint16 up to 65,536, else uint32) beside `meta.json` (tokenizer, vocabulary, token count,
split boundaries, the source's size and SHA-256), in a cache directory keyed by the source's
content hash: every run on the same content shares one copy, and every DDP rank maps the same
pages. Later runs only hash the source, so start-up does not grow with the corpus beyond that,
and memory stays flat: batches read the few windows they need from the map.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from shakegpt.common.atomic import create_fresh, os_reason, special_kind, write_text
from shakegpt.common.errors import UserError
from shakegpt.common.paths import PROJECT_ROOT
from shakegpt.data.splits import SPLITS, split_bounds, splits_key
from shakegpt.data.tokenizers import ByteTokenizer, CharTokenizer, make_tokenizer

DEFAULT_CORPUS = PROJECT_ROOT / "data" / "tinyshakespeare.txt"
DEFAULT_CORPUS_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
DEFAULT_CACHE = PROJECT_ROOT / "data" / "cache"  # or $SHAKEGPT_CACHE, or data.cache_dir
CACHE_FORMAT = 1
CHUNK_BYTES = 1 << 24  # 16 MiB per read: a few hundred MB of working memory at most
CHUNK_TOKENS = 1 << 24  # tokens counted at once when a cache entry is checked
PREFIX_TOKENS = 4096  # the entry's first tokens, checked against the source's first characters
META_LIMIT = 1 << 26  # bytes of meta.json: a vocabulary of every Unicode character fits
MAX_CODE_POINT = 0x110000


@dataclass
class PreparedCorpus:
    tokens: torch.Tensor  # (n_tokens,) uint8/16/32, a view of the memory-mapped token file
    tokenizer: CharTokenizer | ByteTokenizer
    meta: dict
    directory: Path
    bounds: dict[str, tuple[int, int]]  # split -> [start, end) in tokens

    def split(self, name: str) -> torch.Tensor:
        start, end = self.bounds[name]
        return self.tokens[start:end]


def corpus_path(path: str | Path | None) -> Path:
    return Path(path) if path is not None else DEFAULT_CORPUS


@contextlib.contextmanager
def open_regular(path: Path, what: str):
    """path opened for reading in binary, or one line saying why not. Only a regular file: a
    pipe, a device or a directory would block, never end, or fail obscurely. (Opened without
    waiting, so a named pipe with no writer is refused rather than waited on.)"""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {os_reason(exc)}") from None
    kind = special_kind(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise UserError(f"cannot read {what} {path}: it is {kind}, not a text file")
    with os.fdopen(fd, "rb") as f:
        yield f


def hash_source(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a corpus file, or one line saying why it cannot be read."""
    with open_regular(path, "corpus") as f:
        try:
            return os.fstat(f.fileno()).st_size, hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as exc:
            raise UserError(f"cannot read corpus {path}: {os_reason(exc)}") from None


def read_bytes(path: Path, what: str, limit: int | None = None) -> bytes:
    """A file the user named (what: 'corpus', 'prompt file'), of at most limit bytes, or one
    line saying why not."""
    with open_regular(path, what) as f:
        try:
            raw = f.read() if limit is None else f.read(limit + 1)
        except OSError as exc:
            raise UserError(f"cannot read {what} {path}: {os_reason(exc)}") from None
    if limit is not None and len(raw) > limit:
        raise UserError(f"{what} {path} is over the limit of {limit:,} bytes")
    return raw


def decode_utf8(raw: bytes, path: Path, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not UTF-8 text (bad byte at offset {exc.start})") from None


def read_corpus(path: str | Path | None) -> str:
    """A small corpus's whole text, read at once (the shipped Tiny Shakespeare, checksum-verified,
    when path is None). Training reads corpora through prepare_corpus instead."""
    source = corpus_path(path)
    raw = read_bytes(source, "corpus")
    check_source(source, path is None, len(raw), hashlib.sha256(raw).hexdigest())
    if b"\x00" in raw:
        raise UserError(f"corpus {source} looks binary (contains NUL bytes), expected UTF-8 text")
    return decode_utf8(raw, source, "corpus")


def check_source(path: Path, default: bool, size: int, digest: str) -> None:
    if default and digest != DEFAULT_CORPUS_SHA256:
        raise UserError(f"{path} is not the shipped Tiny Shakespeare (sha256 mismatch)")
    if size == 0:
        raise UserError(f"corpus {path} is empty")


def prepare_corpus(
    path: str | Path | None,
    tokenizer: str = "char",
    cache_dir: str | Path | None = None,
    fractions: tuple[float, float, float] = (0.9, 0.1, 0.0),
) -> PreparedCorpus:
    """The corpus as tokens cut into train/val/test: from the cache when it holds this content,
    else prepared first. path None: the shipped Tiny Shakespeare, checksum-verified."""
    source = corpus_path(path)
    make_tokenizer(tokenizer, "")  # an unknown kind fails here, before any work
    size, digest = hash_source(source)
    check_source(source, path is None, size, digest)
    directory = cache_root(cache_dir) / f"{digest[:24]}-{tokenizer}"
    with cache_lock(directory):
        meta = read_meta(directory, source, digest, tokenizer, size)
        if meta is None:
            meta = build_cache(source, directory, tokenizer, size, digest)
        bounds = split_bounds(meta["n_tokens"], fractions)
        record_splits(directory, meta, fractions, bounds)
    tokens = map_tokens(directory, meta)
    return PreparedCorpus(tokens, make_tokenizer(tokenizer, meta["vocab"]), meta, directory, bounds)


def record_splits(directory: Path, meta: dict, fractions, bounds: dict) -> None:
    """Add these fractions' boundaries to meta.json, for the reader of the cache: the token
    file is shared by every split choice, and the boundaries are a pure function of both."""
    key = splits_key(fractions)
    if key in meta["splits"]:
        return
    meta["splits"][key] = {name: list(bounds[name]) for name in SPLITS}
    with contextlib.suppress(UserError):  # a read-only cache still serves its tokens
        write_text(directory / "meta.json", json.dumps(meta, indent=1))


def cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir or os.environ.get("SHAKEGPT_CACHE") or DEFAULT_CACHE)


@contextlib.contextmanager
def cache_lock(directory: Path):
    """One preparer at a time per cache entry: DDP ranks started together wait for the first.
    filelock's lock: flock where the system has it, else the platform's own (Windows), and it
    never opens a link planted at the lock's name (a cache may be shared)."""
    if directory.is_symlink():
        raise UserError(f"the corpus cache entry {directory} is a symbolic link; remove it, or set data.cache_dir")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = FileLock(directory / "lock")
        lock.acquire()
    except OSError as exc:
        raise UserError(f"cannot use the corpus cache {directory}: {os_reason(exc)}; set data.cache_dir") from None
    try:
        yield
    finally:
        lock.release()


def read_meta(directory: Path, source: Path, digest: str, tokenizer: str, size: int) -> dict | None:
    """The entry's metadata if it is whole, consistent and describes this source; None (rebuild)
    otherwise. A cache may be shared, so nothing in it is taken on trust."""
    meta_file, token_file = directory / "meta.json", directory / "tokens.bin"
    try:
        if meta_file.is_symlink() or token_file.is_symlink():
            problem = "holds a symbolic link"
        elif meta_file.stat().st_size > META_LIMIT:
            problem = "has an oversized meta.json"
        else:
            meta = json.loads(meta_file.read_text())
            problem = meta_problem(meta, digest, tokenizer, size) or tokens_problem(meta, token_file, source)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        problem = "is unreadable"
    if problem:
        print(f"the corpus cache {directory} {problem}: preparing it again", file=sys.stderr)
        return None
    return meta


def meta_problem(meta, digest: str, tokenizer: str, size: int) -> str | None:
    """What is wrong with meta.json for this source, or None."""
    if not isinstance(meta, dict) or not isinstance(meta.get("splits"), dict):
        return "is unreadable"
    if (meta.get("format"), meta.get("sha256"), meta.get("tokenizer")) != (CACHE_FORMAT, digest, tokenizer):
        return "is not this corpus"
    n_tokens, vocab, dtype = meta.get("n_tokens"), meta.get("vocab"), meta.get("dtype")
    if not isinstance(n_tokens, int) or isinstance(n_tokens, bool) or not 1 <= n_tokens <= size:
        return "has an impossible token count"  # a token is at least one byte of the source
    if tokenizer == "byte":
        return None if (vocab, dtype, n_tokens) == (None, "uint8", size) else "is not a byte-level entry"
    if not isinstance(vocab, str) or not 2 <= len(vocab) <= n_tokens or list(vocab) != sorted(set(vocab)):
        return "has an impossible vocabulary"
    return None if dtype == token_dtype(len(vocab)) else "has the wrong token type"


def tokens_problem(meta: dict, token_file: Path, source: Path) -> str | None:
    """What is wrong with tokens.bin for meta, or None: its size; for characters, every token
    below the vocabulary size, each symbol used, and the first tokens spelling the source's start."""
    if token_file.stat().st_size != meta["n_tokens"] * np.dtype(meta["dtype"]).itemsize:
        return "is incomplete"
    if meta["vocab"] is None:
        return None  # bytes: every value of a uint8 is a token
    vocab = meta["vocab"]
    tokens, used = np.memmap(token_file, dtype=meta["dtype"], mode="r"), np.zeros(len(vocab), dtype=bool)
    for start in range(0, len(tokens), CHUNK_TOKENS):
        counts = np.bincount(tokens[start : start + CHUNK_TOKENS], minlength=len(vocab))
        if len(counts) > len(vocab):
            return "holds tokens beyond its vocabulary"
        used |= counts > 0
    if not used.all():
        return "has symbols its tokens never use"
    with open(source, "rb") as f:
        start = f.read(4 * PREFIX_TOKENS).decode("utf-8", errors="ignore")
    prefix = "".join(vocab[i] for i in tokens[:PREFIX_TOKENS])
    return None if start.startswith(prefix) else "does not spell the source"


def token_dtype(vocab_size: int) -> str:
    """The smallest unsigned type that holds every token."""
    return "uint8" if vocab_size <= 1 << 8 else "uint16" if vocab_size <= 1 << 16 else "uint32"


def map_tokens(directory: Path, meta: dict) -> torch.Tensor:
    # Copy-on-write: pages stay shared with the page cache (and other ranks) as long as nothing
    # writes them, and torch gets the writable array it expects. Pages a batch touches count in
    # the process's RSS while mapped, but they are the one shared, reclaimable copy of the file.
    array = np.memmap(directory / "tokens.bin", dtype=meta["dtype"], mode="c", shape=(meta["n_tokens"],))
    return torch.from_numpy(array)


def build_cache(source: Path, directory: Path, tokenizer: str, size: int, digest: str) -> dict:
    """Encode source into directory/tokens.bin, then write meta.json last: an entry with a
    meta.json is complete."""
    # On stdout, as the run's other progress: stderr keeps to the one line of an error.
    print(f"preparing {source} ({size:,} bytes) into {directory}: once per corpus", flush=True)
    for name in ("tokens.bin", "meta.json"):  # links found there (read_meta refused them) go; their targets stay
        if (directory / name).is_symlink():
            (directory / name).unlink()
    if tokenizer == "byte":
        vocab, dtype = None, "uint8"
    else:
        vocab = char_vocabulary(source, size)
        dtype = token_dtype(len(vocab))
    tmp = None
    try:
        fd, tmp = create_fresh(directory, "tokens.bin")  # a fresh name: a planted link is never followed
        with os.fdopen(fd, "wb") as out:
            n_tokens = write_tokens(source, out, vocab, dtype, size)
        os.replace(tmp, directory / "tokens.bin")
    except OSError as exc:
        raise UserError(f"cannot write the prepared corpus to {directory}: {os_reason(exc)}; set data.cache_dir") from None
    finally:  # a full disk, a bad byte or Ctrl-C part way: no half-written file stays behind
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    meta = {
        "format": CACHE_FORMAT, "source": str(source.resolve()), "size": size, "sha256": digest,
        "tokenizer": tokenizer, "vocab": vocab, "dtype": dtype, "n_tokens": n_tokens, "splits": {},
    }
    write_text(directory / "meta.json", json.dumps(meta, indent=1))
    return meta


def read_chunks(source: Path, size: int, desc: str):
    """The file's bytes, CHUNK_BYTES at a time, with a progress bar on a terminal."""
    from tqdm import tqdm

    with open(source, "rb") as f, tqdm(total=size, desc=desc, unit="B", unit_scale=True, disable=None, file=sys.stderr) as bar:
        while chunk := f.read(CHUNK_BYTES):
            bar.update(len(chunk))
            yield chunk


def text_chunks(source: Path, size: int, desc: str):
    """(offset, text) of the file decoded as UTF-8, a character never split across chunks."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    for chunk in read_chunks(source, size, desc):
        if b"\x00" in chunk:
            raise UserError(f"corpus {source} looks binary (contains NUL bytes); data.tokenizer=byte reads any file")
        try:
            yield offset, decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise UserError(
                f"corpus {source} is not UTF-8 text (bad byte at offset {offset + exc.start}); data.tokenizer=byte reads any file"
            ) from None
        offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise UserError(f"corpus {source} is not UTF-8 text (it ends inside a character)") from None


def code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def char_vocabulary(source: Path, size: int) -> str:
    """The sorted distinct characters of a UTF-8 file (first pass)."""
    seen = np.zeros(MAX_CODE_POINT, dtype=bool)
    for _, text in text_chunks(source, size, "vocabulary"):
        seen[code_points(text)] = True
    vocab = "".join(map(chr, np.flatnonzero(seen)))
    if len(vocab) < 2:
        raise UserError(f"the corpus has only {len(vocab)} distinct character; a language model needs at least 2")
    return vocab


def write_tokens(source: Path, out, vocab: str | None, dtype: str, size: int) -> int:
    """Encode the file into out (second pass): bytes as they are, characters by their index in
    vocab. Returns the number of tokens."""
    n_tokens = 0
    if vocab is None:
        for chunk in read_chunks(source, size, "tokens"):
            out.write(chunk)
            n_tokens += len(chunk)
        return n_tokens
    index = np.zeros(MAX_CODE_POINT, dtype=dtype)
    index[[ord(ch) for ch in vocab]] = np.arange(len(vocab))
    for _, text in text_chunks(source, size, "tokens"):
        out.write(index[code_points(text)].tobytes())
        n_tokens += len(text)
    return n_tokens
