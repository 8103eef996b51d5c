"""The learning-rate range test (Leslie Smith, 2015; fast.ai's learning-rate finder): train with
exponentially rising learning rates, record the loss at each, and pick a rate below where the
loss stops falling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from shakegpt.common.atomic import save_figure
from shakegpt.common.config import check_fraction
from shakegpt.common.errors import UserError
from shakegpt.training.devices import parallel_jobs, pick_threads
from shakegpt.training.optimizers import build_optimizer

# Stop once the smoothed loss exceeds this multiple of its best: the rate has blown it up.
DIVERGENCE_FACTOR = 4.0


@dataclass
class RangeTest:
    log10_lrs: list[float]
    losses: list[float]  # raw loss at each step
    smoothed: list[float]  # bias-corrected exponential moving average
    suggestion: float
    valley_log10_lr: float

    @property
    def explanation(self) -> str:
        return (
            f"the smoothed loss is lowest at lr = 10^{self.valley_log10_lr:.2f} = {10 ** self.valley_log10_lr:.3g}; "
            f"the suggestion is 10x below that valley floor, where training is still stable: {self.suggestion:.3g}"
        )


def check_range(min_exp: float, max_exp: float, steps: int, smoothing: float) -> None:
    if not min_exp < max_exp:
        raise UserError(f"lr_range_test.min_exp ({min_exp}) must be below max_exp ({max_exp})")
    if int(steps) != steps or steps < 10:
        raise UserError(f"lr_range_test.steps must be an integer of at least 10, got {steps}")
    check_fraction("lr_range_test.smoothing", smoothing)


def lr_range_test(model, batches, min_exp=-4.0, max_exp=0.0, steps=1000, smoothing=0.9) -> RangeTest:
    """Train model on batches for `steps` steps, lr from 10^min_exp to 10^max_exp (log-spaced)."""
    check_range(min_exp, max_exp, steps, smoothing)
    exponents = torch.linspace(min_exp, max_exp, steps).tolist()
    optimizer = build_optimizer(model, model.hparams.optimizer)
    if len({group["lr"] for group in optimizer.param_groups}) > 1:
        raise UserError(
            "the learning-rate range test sweeps one rate and this optimizer has several "
            "(optimizer=muon: lr and muon_lr): set optimizer.lr to a number and lr_find=false"
        )
    model.train()
    losses, smoothed, average = [], [], 0.0
    for i, (exponent, (x, y)) in enumerate(zip(exponents, batches)):
        for group in optimizer.param_groups:
            group["lr"] = 10**exponent
        loss = model.loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        if not math.isfinite(value):
            break
        average = smoothing * average + (1 - smoothing) * value
        losses.append(value)
        smoothed.append(average / (1 - smoothing ** (i + 1)))
        if smoothed[-1] > DIVERGENCE_FACTOR * min(smoothed):
            break
    if len(smoothed) < 2:
        raise UserError("the range test diverged at once: lower lr_range_test.min_exp")
    valley = min(range(len(smoothed)), key=smoothed.__getitem__)
    valley_exp = exponents[valley]
    suggestion = 10 ** max(min_exp, valley_exp - 1)
    return RangeTest(exponents[: len(losses)], losses, smoothed, suggestion, valley_exp)


def plot_range_test(result: RangeTest, path: Path):
    """Loss against log10(lr), the range test's usual plot, with the valley and the suggestion marked.
    Saved to path (atomically); returns the figure for TensorBoard."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))  # outside pyplot: a notebook's backend is left alone
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(result.log10_lrs, result.losses, alpha=0.35, label="loss")
    ax.plot(result.log10_lrs, result.smoothed, label="smoothed loss")
    ax.axvline(result.valley_log10_lr, color="grey", linestyle=":", label="valley floor")
    ax.axvline(math.log10(result.suggestion), color="red", linestyle="--", label=f"suggestion {result.suggestion:.3g}")
    # The last steps can blow up by orders of magnitude: keep the interesting range in view.
    low = min(result.smoothed)
    ax.set_ylim(low - 0.1 * (result.smoothed[0] - low), 1.15 * max(result.smoothed[: max(1, len(result.smoothed) // 10)]))
    ax.set_xlabel("log10(learning rate)")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def find_lr(cfg: DictConfig, model, datamodule, out: Path, loggers: list) -> float:
    """Run the range test on a fresh model; plot to lr_find.png (and TensorBoard); its curve to
    every logger; the suggestion."""
    torch.set_num_threads(pick_threads(cfg.threads, sum(p.numel() for p in model.parameters()), parallel_jobs()))
    result = lr_range_test(model, iter(datamodule.train_dataloader()), **cfg.lr_range_test)
    figure = plot_range_test(result, out / "lr_find.png")
    for logger in loggers:
        for step, (log10_lr, loss) in enumerate(zip(result.log10_lrs, result.losses)):
            logger.log_metrics({"lr_find/loss": loss, "lr_find/log10_lr": log10_lr}, step)
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure("lr_find", figure)
        logger.save()
    print(f"learning-rate range test: suggested lr {result.suggestion:.3g}: {result.explanation}; plot {out / 'lr_find.png'}")
    return result.suggestion
