"""The lecture's loss estimate made exact: a checkpoint scored on a whole split.

    python -m shakegpt.evaluate ckpt=<run>/checkpoints/best.ckpt [split=val|train|test] [corpus=<file>] [device=auto]

ckpt=<path>      checkpoint to score (default: the newest best.ckpt under outputs/ or multirun/)
split=S          train, val (the default) or test, as the run's data.splits cut them
corpus=<file>    score on this text file instead of the run's corpus (needed when the run's
                 corpus lies outside this directory)
device=D         auto (the default: CUDA, else mps, else CPU), cpu, cuda, cuda:N or mps
batch=N          windows per forward pass (default 64; fewer take less memory)

The split (the run's own: its corpus, tokenizer and data.splits, read from the run directory)
is cut into consecutive windows of the model's block_size; every position is predicted once,
from the earlier positions of its window. The result is the mean cross-entropy over all of
them and the same in bits per character (loss / ln 2; bits per byte for a byte-level model),
the unit of enwik8 and text8. Unlike the 200 random batches a run evaluates on, it has no
sampling noise: the same checkpoint always gets the same figure. The corpus is read through
the same memory-mapped cache training uses.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from shakegpt.common.errors import UserError, exit_quietly_on_ctrl_c, report_user_errors
from shakegpt.common.options import read_options
from shakegpt.data import SPLITS, parse_fractions, prepare_corpus
from shakegpt.bookkeeping.checkpoints import load_model, shown
from shakegpt.sampling.generate import newest_checkpoint, pick_device

UNITS = {"char": "character", "byte": "byte"}
OPTIONS = {"ckpt": None, "split": "val", "corpus": None, "device": "auto", "batch": "64"}


@torch.no_grad()
def split_loss(model, tokens: torch.Tensor, batch: int = 64) -> tuple[float, int]:
    """(mean loss, positions scored) of model over tokens (1-D, any integer type): consecutive
    windows of block_size, each target scored once; the last, shorter window too."""
    block = model.block_size
    n_targets = len(tokens) - 1
    if n_targets < 1:
        raise UserError("the split holds fewer than 2 tokens: nothing to score")
    n_full = n_targets // block
    inputs = tokens[: n_full * block].view(n_full, block)  # (windows, T)
    targets = tokens[1 : n_full * block + 1].view(n_full, block)
    total = 0.0
    for start in range(0, n_full, batch):
        total += window_loss_sum(model, inputs[start : start + batch], targets[start : start + batch])
    if n_targets % block:  # the tail: positions n_full * block .. n_targets - 1
        tail = slice(n_full * block, n_targets)
        total += window_loss_sum(model, tokens[tail][None], tokens[tail.start + 1 : n_targets + 1][None])
    return total / n_targets, n_targets


def window_loss_sum(model, x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.to(model.device).long(), y.to(model.device).long()  # a token file's narrow type, widened
    logits = model(x)  # (B, T, vocab)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum").item()


def run_settings(ckpt: Path, corpus: str | None) -> dict:
    """The data settings of the checkpoint's run (corpus, splits); the defaults when the file
    lies outside a run directory. Runs from before data.splits name train_fraction.

    A run directory may come from someone else, so what its saved config names is not obeyed
    blindly: its corpus is read only when it lies inside the working directory (else corpus=
    must name it), and its data.cache_dir, a place to write, is ignored for the usual cache."""
    config = ckpt.resolve().parent.parent / ".hydra" / "config.yaml"
    data = saved_data_settings(config) if config.is_file() else {}
    train = data.get("train_fraction", 0.9)
    path = corpus if corpus is not None else data.get("path")
    if corpus is None and path is not None and not inside_working_directory(path):
        raise UserError(
            f"the run of {ckpt} was trained on {path if str(path).isprintable() else shown(path)}, outside this directory; "
            "to score on that file, pass corpus=<its path> (a run directory from elsewhere does not choose which files are read)"
        )
    return {"path": path, "splits": data.get("splits", [train, 1 - train, 0.0]), "cache_dir": None}


def saved_data_settings(config: Path) -> dict:
    try:
        data = OmegaConf.to_container(OmegaConf.load(config)).get("data", {})
    except Exception:  # YAML and OmegaConf's errors share no base; a malformed file is the user's to see
        raise UserError(f"{config} is not a readable run config; pass corpus= and split= yourself") from None
    if not isinstance(data, dict):
        raise UserError(f"{config} holds no data settings; pass corpus= yourself")
    return data


def inside_working_directory(path) -> bool:
    if not isinstance(path, str):
        return False
    cwd = Path.cwd().resolve()
    return Path(path).resolve().is_relative_to(cwd)


def split_of(model, corpus: str | None, settings: dict, split: str) -> torch.Tensor:
    """The split as the run's datamodule cut it, in the model's tokens."""
    prepared = prepare_corpus(corpus, model.tokenizer.kind, settings["cache_dir"], parse_fractions(settings["splits"]))
    tokens = prepared.split(split)
    if prepared.tokenizer.chars == model.tokenizer.chars:
        return tokens
    # Another corpus than the model's: its characters renumbered into the model's vocabulary.
    remap = torch.tensor(model.tokenizer.encode(prepared.tokenizer.chars))
    return remap[tokens.long()]


def score_checkpoint(ckpt: Path, split: str = "val", device: str = "auto", corpus: str | None = None, batch: int = 64):
    """(mean loss, positions scored, model) of a checkpoint over its run's whole split."""
    model = load_model(ckpt).to(pick_device(device))
    settings = run_settings(ckpt, corpus)
    tokens = split_of(model, settings["path"], settings, split)
    if len(tokens) < 2:
        raise UserError(f"the {split} split is empty; data.splits sets its fraction (e.g. [0.9,0.05,0.05])")
    loss, scored = split_loss(model, tokens, batch)
    return loss, scored, model


def check_split(split: str) -> None:
    """A split the runs cut (train, val, test), or one line naming them."""
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split}")


def parse_options(argv: list[str]) -> dict:
    """argv without the program name -> the options, checked; --help prints the usage and exits."""
    options = read_options(argv, OPTIONS, "python -m shakegpt.evaluate", __doc__)
    check_split(options["split"])
    if not (options["batch"].isascii() and options["batch"].isdigit()) or int(options["batch"]) < 1:
        raise UserError(f"batch must be a positive integer, got {options['batch']}")
    return options


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    ckpt = Path(options["ckpt"]) if options["ckpt"] else newest_checkpoint()
    loss, scored, model = score_checkpoint(ckpt, options["split"], options["device"], options["corpus"], int(options["batch"]))
    print(
        f"{options['split']}: loss {loss:.4f}, {loss / math.log(2):.4f} bits per {UNITS[model.tokenizer.kind]}, "
        f"over all {scored:,} positions in windows of {model.block_size} ({ckpt})"
    )


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
