"""Attention maps of a checkpoint: where each position looks, for every layer and head.

    python -m shakegpt.attention [ckpt=<path>] [prompt=<text> | prompt_file=<path>] [out=<file.png>] [device=cpu]

ckpt=<path>          checkpoint to read (default: the newest best.ckpt under outputs/ or multirun/)
prompt=<text>        the text to run through the model, taken exactly as the shell passes it, as
                     sample.py takes it: commas, quotes, brackets, '=', spaces and any letter are
                     kept; \\n is a newline and \\\\ a backslash (default: lines of Romeo and Juliet
                     ending "\\nO Romeo", shakegpt.attention.DEFAULT_PROMPT)
prompt_file=<path>   read the prompt from a UTF-8 file instead, as it is (no escapes); a regular
                     file of at most 1 MB (1,000,000 bytes)
out=<file.png>       the image to write (default: attention.png in the checkpoint's run directory)
device=D             cpu (the default), auto, cuda, cuda:N or mps

A prompt longer than the model's block_size is cut to its last block_size characters (tokens,
for byte-level models), as sampling does: the model never sees more. The image holds one heatmap per (layer, head), layers
and heads counted from 0 as in the checkpoint's names (body.0, ...): row = query position,
column = key position, both labelled with the prompt's characters (a space shows as ␣, a
newline as \\n). One colour scale, 0 to 1, serves every panel; grey cells above the diagonal are
the future, which a position cannot see. The weights are the model's own: recorded inside its
forward pass, from the q and k its attention computed (after RoPE and QK-norm from v8 on).
Versions v2 to v16 have attention; bigram has none.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path
from typing import Iterator

import torch

from shakegpt.common.atomic import refuse_special, save_figure
from shakegpt.common.errors import UserError, exit_quietly_on_ctrl_c, report_user_errors
from shakegpt.common.options import read_options
from shakegpt.models.v2 import CausalSelfAttention
from shakegpt.bookkeeping.checkpoints import load_model
from shakegpt.sampling.generate import newest_checkpoint, pick_device
from shakegpt.sampling.prompt import read_prompt, split_prompt_args

# The command's default prompt and the training callback's: every character is in Tiny
# Shakespeare, and its last 8 (a newline, capitals, a space) suit the lecture's 8-wide models.
DEFAULT_PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nO Romeo"
OPTIONS = {"ckpt": None, "out": None, "device": "cpu"}
SHOWN = {" ": "␣", "\n": "\\n", "\t": "\\t"}  # characters that would be invisible as tick labels
LABELLED_POSITIONS = 32  # at most this many tick labels per axis; longer prompts label every k-th
COLOURS, FUTURE_GREY = "viridis", 0.85  # weights 0 (dark blue) to 1 (yellow); the masked future light grey


def attention_layers(model: torch.nn.Module) -> list[CausalSelfAttention]:
    """The model's attention modules, one per layer (v2 to v16 build theirs from this class)."""
    return [module for module in model.modules() if isinstance(module, CausalSelfAttention)]


@contextlib.contextmanager
def recording_attention(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, each attention layer the model runs appends its softmax weights,
    (B, n_head, T, T), to the list yielded, in the order forward runs them: layer 0 first.
    Outside it the layers run the fused kernel and keep nothing."""
    layers = attention_layers(model)
    if not layers:
        raise UserError(
            f"{type(model).__name__} has no attention to show (bigram predicts from one character alone); "
            "use a checkpoint of v2 or later"
        )
    maps: list[torch.Tensor] = []
    for layer in layers:
        layer.recorded = maps
    try:
        yield maps
    finally:
        for layer in layers:
            layer.recorded = None


@torch.no_grad()
def attention_maps(model, text: str) -> tuple[list[int], list[torch.Tensor]]:
    """(the tokens the model saw, one (n_head, T, T) float CPU tensor per layer) for text,
    of which the model sees the last block_size tokens, as in sampling."""
    tokens = model.tokenizer.encode(text)[-model.block_size :]  # the whole prompt checked, its end used
    idx = torch.tensor([tokens], device=model.device)  # (1, T)
    was_training = model.training
    model.eval()  # no dropout: the weights a prediction uses
    try:
        with recording_attention(model) as maps:
            # forward itself, not model(...): eager even when the run compiled the model, so
            # recording never makes torch.compile trace the module again.
            model.forward(idx)
    finally:
        model.train(was_training)
    return tokens, [weights[0].float().cpu() for weights in maps]


def token_labels(vocab, tokens: list[int]) -> list[str]:
    """Tick labels: each token's character, with spaces, newlines and unprintable bytes made visible."""
    byte_level = getattr(vocab, "kind", "char") == "byte"
    labels = []
    for token in tokens:
        char = vocab.chars[token]
        if char in SHOWN:
            labels.append(SHOWN[char])
        elif not char.isprintable() or (byte_level and token >= 128):  # a byte of a longer UTF-8 character
            labels.append(f"\\x{token:02x}")
        else:
            labels.append(char)
    return labels


def plot_attention(maps: list[torch.Tensor], labels: list[str], title: str):
    """A matplotlib Figure (Agg, outside pyplot): one heatmap per (layer, head), rows = query,
    columns = key, one colour scale from 0 to 1 and a single colorbar for all of them."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_layer, n_head, T = len(maps), maps[0].shape[0], len(labels)
    side = 1.4 + 0.07 * min(T, LABELLED_POSITIONS)  # inches per panel: room for the labels
    width = max(side * n_head + 1.2, 5.0)  # at least the width of a two-line title
    figure = Figure(figsize=(width, side * n_layer + 1.0), layout="constrained")
    FigureCanvasAgg(figure)  # the Agg backend, whatever pyplot's default is
    axes = figure.subplots(n_layer, n_head, squeeze=False)
    colours = colormaps[COLOURS].with_extremes(bad=str(FUTURE_GREY))  # bad (NaN): the masked future
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    for layer, heads in enumerate(maps):
        for head, weights in enumerate(heads):  # weights: (T, T)
            ax = axes[layer, head]
            image = ax.imshow(weights.masked_fill(future, float("nan")).numpy(), cmap=colours, vmin=0, vmax=1)
            ax.set_title(f"layer {layer} head {head}", fontsize=9)
            label_axes(ax, labels, first_column=head == 0, last_row=layer == n_layer - 1)
    # Every panel has the same scale (vmin, vmax), so any panel's image stands for all in the colorbar.
    figure.colorbar(image, ax=axes, shrink=min(1.0, 3.0 / n_layer + 0.3), label="attention weight")
    figure.suptitle(title, fontsize=9, parse_math=False)
    return figure


def label_axes(ax, labels: list[str], first_column: bool, last_row: bool) -> None:
    """The prompt's characters (every k-th for long prompts) on the grid's outer edges: panels
    line up, so the left column's labels serve its whole row and the bottom row's its column."""
    step = -(-len(labels) // LABELLED_POSITIONS)  # ceil: at most LABELLED_POSITIONS labels
    positions = list(range(0, len(labels), step))
    shown = [labels[i] for i in positions]
    fontsize = 8 if len(positions) <= 16 else 6
    # Inner panels get no ticks at all: building them was most of the drawing time for v7's 36.
    ax.set_xticks(positions if last_row else [], shown if last_row else [], fontsize=fontsize, parse_math=False)
    ax.set_yticks(positions if first_column else [], shown if first_column else [], fontsize=fontsize, parse_math=False)
    ax.tick_params(length=0)
    if last_row:
        ax.set_xlabel("key (looked at)", fontsize=8)
    if first_column:
        ax.set_ylabel("query (looking)", fontsize=8)


@functools.cache
def colour_table() -> torch.Tensor:  # (256, 3) uint8: the figure's colour map, weight 0 to 1
    from matplotlib import colormaps

    return torch.from_numpy(colormaps[COLOURS](range(256), bytes=True)[:, :3].copy())


def attention_grid(maps: list[torch.Tensor], panel: int = 128, gap: int = 4) -> torch.Tensor:
    """The maps as one (H, W, 3) uint8 picture without text: layers top to bottom, heads left
    to right, each panel rows = query, columns = key, coloured as the figure (the future grey).
    Milliseconds where the labelled figure takes a second: what TensorBoard gets at each evaluation."""
    n_head, T, _ = maps[0].shape
    scale = max(1, panel // T)  # pixels per position
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    size = T * scale + gap
    grid = torch.full((len(maps) * size + gap, n_head * size + gap, 3), 255, dtype=torch.uint8)  # white gaps
    for layer, heads in enumerate(maps):
        for head, weights in enumerate(heads):  # weights: (T, T)
            pixels = colour_table()[(weights.clamp(0, 1) * 255).round().long()]  # (T, T, 3)
            pixels[future] = round(FUTURE_GREY * 255)
            pixels = pixels.repeat_interleave(scale, dim=0).repeat_interleave(scale, dim=1)
            top, left = gap + layer * size, gap + head * size
            grid[top : top + T * scale, left : left + T * scale] = pixels
    return grid


def attention_figure(model, text: str, title: str):
    """The figure of text's attention maps in model, titled; its prompt cut to block_size."""
    tokens, maps = attention_maps(model, text)
    labels = token_labels(model.tokenizer, tokens)
    shown = "".join(labels) if len(labels) <= 60 else "…" + "".join(labels[-59:])  # the tick labels show the rest
    n_layer, n_head = len(maps), maps[0].shape[0]
    heading = f"{title}\n{n_layer} layer{'s' * (n_layer > 1)} x {n_head} head{'s' * (n_head > 1)}, prompt {shown}"
    if len(tokens) < len(model.tokenizer.encode(text)):
        heading += f"\n(the prompt's last {len(tokens)} characters: the model's block_size)"
    return plot_attention(maps, labels, heading)


def parse_options(argv: list[str]) -> dict:
    """argv without the program name -> the options; prompt= and prompt_file= as sample.py reads
    them (a flag such as --help also ends a prompt). --help prints the usage and exits."""
    rest, prompt, prompt_file = split_prompt_args(["attention", *argv])
    known = dict(OPTIONS, prompt=None, prompt_file=None)  # listed in the message, taken out above
    options = read_options(rest[1:], known, "python -m shakegpt.attention", __doc__)
    return dict(options, prompt=prompt, prompt_file=prompt_file)


def prompt_text(prompt: str | None, prompt_file: str | None) -> str:
    """The prompt as sample.py reads it; none given: DEFAULT_PROMPT. An empty one shows nothing."""
    if prompt is None and prompt_file is None:
        return DEFAULT_PROMPT
    text = read_prompt(prompt, prompt_file)
    if not text:
        raise UserError("the prompt is empty: give prompt=<text> or prompt_file=<path>")
    return text


def check_out(out: Path) -> None:
    """out= names an image format matplotlib writes (by its ending; none: PNG), before any work."""
    from matplotlib.backend_bases import FigureCanvasBase

    refuse_special(out)
    formats = FigureCanvasBase.get_supported_filetypes()
    if out.suffix and out.suffix[1:].lower() not in formats:
        raise UserError(f"out={out}: the name's ending gives the image format, one of {', '.join(sorted(formats))}")


def default_out(ckpt: Path) -> Path:
    """attention.png in the run directory (<run>/checkpoints/<file>.ckpt), else beside the file."""
    folder = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return folder / "attention.png"


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    ckpt = Path(options["ckpt"]) if options["ckpt"] else newest_checkpoint()
    text = prompt_text(options["prompt"], options["prompt_file"])
    out = Path(options["out"]) if options["out"] else default_out(ckpt)
    check_out(out)
    model = load_model(ckpt).to(pick_device(options["device"]))
    save_figure(attention_figure(model, text, str(ckpt)), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
