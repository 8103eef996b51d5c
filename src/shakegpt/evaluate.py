"""The lecture's loss estimate made exact: a checkpoint scored on a whole split.

    python -m shakegpt.evaluate ckpt=<run>/checkpoints/best.ckpt [split=val] [corpus=<file>] [device=auto]

The split (the run's own: its corpus and train_fraction, read from the run directory) is cut
into consecutive windows of the model's block_size; every position is predicted once, from the
earlier positions of its window. The result is the mean cross-entropy over all of them and the
same in bits per character (loss / ln 2). Unlike the 200 random batches a run evaluates on, it
has no sampling noise: the same checkpoint always gets the same figure.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from shakegpt.common.errors import UserError, report_user_errors
from shakegpt.data import read_corpus, split_tokens
from shakegpt.sampling.generate import load_model, newest_checkpoint, pick_device

OPTIONS = {"ckpt": None, "split": "val", "corpus": None, "device": "auto", "batch": "64"}


@torch.no_grad()
def split_loss(model, tokens: torch.Tensor, batch: int = 64) -> tuple[float, int]:
    """(mean loss, positions scored) of model over tokens (1-D): consecutive windows of
    block_size, each target scored once; the last, shorter window too."""
    block = model.block_size
    n_targets = len(tokens) - 1
    if n_targets < 1:
        raise UserError("the split holds fewer than 2 characters: nothing to score")
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
    logits = model(x.to(model.device))  # (B, T, vocab)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.to(model.device).flatten(), reduction="sum").item()


def run_settings(ckpt: Path) -> tuple[str | None, float]:
    """(corpus, train_fraction) the checkpoint's run trained on; the defaults when the file
    lies outside a run directory."""
    config = ckpt.resolve().parent.parent / ".hydra" / "config.yaml"
    if not config.is_file():
        return None, 0.9
    data = OmegaConf.load(config).get("data", {})
    return data.get("path"), data.get("train_fraction", 0.9)


def split_of(model, corpus: str | None, train_fraction: float, split: str) -> torch.Tensor:
    """The split as the run's datamodule cut it."""
    tokens = torch.tensor(model.vocab.encode(read_corpus(corpus)), dtype=torch.long)
    train, val = split_tokens(tokens, train_fraction)
    return train if split == "train" else val


def score_checkpoint(ckpt: Path, split: str = "val", device: str = "auto", corpus: str | None = None, batch: int = 64):
    """(mean loss, positions scored, model) of a checkpoint over its run's whole split."""
    model = load_model(ckpt).to(pick_device(device))
    run_corpus, train_fraction = run_settings(ckpt)
    loss, scored = split_loss(model, split_of(model, corpus or run_corpus, train_fraction, split), batch)
    return loss, scored, model


def parse_options(argv: list[str]) -> dict:
    options = dict(OPTIONS)
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or key not in OPTIONS:
            raise UserError(f"unknown argument {arg}; the options are {', '.join(f'{k}=' for k in OPTIONS)} (see --help)")
        options[key] = value
    if options["split"] not in ("train", "val"):
        raise UserError(f"split must be train or val, got {options['split']}")
    if not options["batch"].isdigit() or int(options["batch"]) < 1:
        raise UserError(f"batch must be a positive integer, got {options['batch']}")
    return options


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    options = parse_options(argv)
    ckpt = Path(options["ckpt"]) if options["ckpt"] else newest_checkpoint()
    loss, scored, model = score_checkpoint(ckpt, options["split"], options["device"], options["corpus"], int(options["batch"]))
    print(
        f"{options['split']}: loss {loss:.4f}, {loss / math.log(2):.4f} bits per character, "
        f"over all {scored:,} positions in windows of {model.block_size} ({ckpt})"
    )


if __name__ == "__main__":
    main()
