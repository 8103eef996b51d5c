"""Lightning callbacks (config group callbacks/): checkpoints, the lecture's final evaluation,
throughput, text samples, the progress bar."""

from __future__ import annotations

import functools
import time
from datetime import timedelta

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from shakegpt.common.errors import quiet_stdout


class Checkpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with its state key formatted once (Lightning formats it at
    every hook call, which costs more than a tiny model's step) and the logs flushed first."""

    @functools.cached_property
    def state_key(self) -> str:
        return super().state_key

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        # A run resumed from this file starts after this step: the curves logged up to it must
        # be on disk before the file is, or a kill loses them (TensorBoard buffers up to 2 min).
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.flush()


class PeriodicCheckpoint(Checkpoint):
    """last.ckpt every N steps or minutes, so an interrupted run loses little. It shares the
    file with the evaluation-time checkpoint: no version counter, the newer simply replaces it."""

    def __init__(self, dirpath, every_n_steps: int | None = None, every_minutes: float | None = None):
        every = {"every_n_train_steps": every_n_steps}
        if every_n_steps is None:
            every = {"train_time_interval": timedelta(minutes=every_minutes)}
        super().__init__(dirpath=dirpath, save_top_k=0, save_last=True, enable_version_counter=False, **every)


class EvaluateAtEnd(L.Callback):
    """Evaluate after the last step too, as the lecture does, even when max_steps is not a
    multiple of the evaluation interval (Lightning validates on request to stop)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True


class Throughput(L.Callback):
    """Training tokens per second over each logging interval, evaluation time excluded."""

    def __init__(self):
        self.start = None
        self.tokens = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.tokens += batch[0].numel() * trainer.world_size
        if trainer.global_step % trainer.log_every_n_steps == 0:
            elapsed = time.perf_counter() - self.start
            pl_module.log("perf/tokens_per_s", self.tokens / elapsed, rank_zero_only=True)
            self.start, self.tokens = None, 0

    def on_validation_start(self, trainer, pl_module):
        self.start, self.tokens = None, 0


class TextSample(L.Callback):
    """After each evaluation, a fixed-seed sample to TensorBoard's text tab."""

    def __init__(self, max_new_tokens: int = 300, seed: int = 1337):
        self.max_new_tokens, self.seed = max_new_tokens, seed

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        text = sample_text(pl_module, self.max_new_tokens, self.seed)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # Markdown would swallow Shakespeare's line breaks: indent it as a code block.
                logger.experiment.add_text("sample", "    " + text.replace("\n", "\n    "), trainer.global_step)


def sample_text(model, max_new_tokens: int, seed: int) -> str:
    was_training = model.training
    model.eval()
    start = torch.zeros((1, 1), dtype=torch.long, device=model.device)  # token 0, as the lecture
    generator = torch.Generator(model.device).manual_seed(seed)
    tokens = model.generate(start, max_new_tokens, generator=generator)[0, 1:]
    model.train(was_training)
    return model.vocab.decode(tokens.tolist())


class StepProgressBar(RichProgressBar):
    """Rich bar counting optimizer steps to max_steps, with ETA: the training stream is
    endless, so Lightning's default shows no total and 'Epoch 0/-2'. It redraws at most every
    `min_interval` seconds: redrawing at every step of a tiny model costs more than the step."""

    def __init__(self, min_interval: float = 0.2):
        super().__init__()
        self.min_interval = min_interval
        self.last_drawn = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        if now - self.last_drawn >= self.min_interval or trainer.global_step >= trainer.max_steps:
            self.last_drawn = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    @property
    def total_train_batches(self):
        return self.trainer.max_steps

    def _get_train_description(self, current_epoch: int) -> str:
        return "train"

    def _init_progress(self, trainer):
        super()._init_progress(trainer)
        if self._console is not None:
            self._console.on_broken_pipe = functools.partial(stop_drawing, self._console)


def stop_drawing(console) -> None:
    """When stdout's reader is gone (`python train.py | tail` ended by Ctrl-C), Rich exits the
    process with status 1, losing the run; instead the bar goes quiet and training goes on."""
    console.quiet = True
    quiet_stdout()
