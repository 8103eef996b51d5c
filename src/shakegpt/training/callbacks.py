"""Lightning callbacks (config group callbacks/): checkpoints, the lecture's final evaluation,
throughput, text samples, attention maps, the progress bar."""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from shakegpt.attention import DEFAULT_PROMPT, attention_grid, attention_layers, attention_maps, token_labels
from shakegpt.common.errors import UserError, quiet_stdout
from shakegpt.training.interrupts import stop_requested
from shakegpt.training.lightning_private import RichProgressBarHooks
from shakegpt.training.loggers import RunRecord

log = logging.getLogger(__name__)


class Checkpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with its state key formatted once (Lightning formats it at
    every hook call, which costs more than a tiny model's step) and the logs flushed first."""

    def __init__(self, *args, every_n_train_steps: int | None = None, train_time_interval=None, **kwargs):
        super().__init__(*args, every_n_train_steps=every_n_train_steps, train_time_interval=train_time_interval, **kwargs)
        self.saves_between_evaluations = bool(every_n_train_steps) or train_time_interval is not None

    def on_train_batch_end(self, trainer, *args, **kwargs):
        # Saving at evaluations only (best.ckpt), there is nothing to decide after a step; Lightning's
        # checks there cost about 20 us, 0.3% of a tiny model's step.
        if self.saves_between_evaluations:
            super().on_train_batch_end(trainer, *args, **kwargs)

    @functools.cached_property
    def state_key(self) -> str:
        return super().state_key

    def load_state_dict(self, state_dict: dict) -> None:
        if not isinstance(state_dict, dict) or state_dict.get("dirpath") != self.dirpath:
            return  # another directory's record (a run resumed from elsewhere): none of it applies here
        # Lightning deletes a superseded best checkpoint by the path this record holds: a
        # record read from a file must name only files of this run's checkpoint directory.
        if not is_own_record(state_dict, self.dirpath):
            log.warning("ignored the checkpoint's record of its best files: it names files outside %s", self.dirpath)
            return
        super().load_state_dict(state_dict)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        # A run resumed from this file starts after this step: the curves logged up to it must
        # be on disk before the file is, or a kill loses them (TensorBoard buffers up to 2 min).
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.flush()


CHECKPOINT_NAME = re.compile(r"[\w.=-]+\.ckpt")


def is_own_record(state: dict, dirpath: str) -> bool:
    """Whether a ModelCheckpoint record read from a file holds only what this callback writes:
    paths of checkpoint files directly inside dirpath (or none) and scores as tensors."""
    best_k = state.get("best_k_models", {})
    paths = [state.get(key, "") for key in ("best_model_path", "kth_best_model_path", "last_model_path")]
    scores = [state.get("best_model_score"), state.get("kth_value")]
    if not isinstance(best_k, dict):
        return False
    return all(
        path == "" or isinstance(path, str) and Path(path).parent == Path(dirpath) and CHECKPOINT_NAME.fullmatch(Path(path).name)
        for path in [*paths, *best_k]
    ) and all(score is None or isinstance(score, torch.Tensor) for score in [*scores, *best_k.values()])


class PeriodicCheckpoint(Checkpoint):
    """last.ckpt every N steps or minutes, so an interrupted run loses little. It shares the
    file with the evaluation-time checkpoint: no version counter, the newer simply replaces it."""

    def __init__(self, dirpath, every_n_steps: int | None = None, every_minutes: float | None = None):
        every = {"every_n_train_steps": every_n_steps}
        if every_n_steps is None:
            every = {"train_time_interval": timedelta(minutes=every_minutes)}
        super().__init__(dirpath=dirpath, save_top_k=0, save_last=True, enable_version_counter=False, **every)

    def on_train_batch_end(self, trainer, *args, **kwargs):
        # An evaluation follows this step and writes last.ckpt once it is done. A file written
        # before it would, after a kill during that evaluation, resume past an evaluation that
        # never finished (Lightning treats a step's checkpoint as taken after its evaluation).
        if not evaluation_follows(trainer):
            super().on_train_batch_end(trainer, *args, **kwargs)


def evaluation_follows(trainer) -> bool:
    """Whether Lightning evaluates right after this step: every val_check_interval steps, and
    after the last. From the step count alone, so every DDP rank decides alike (the periodic
    checkpoint's time test broadcasts from rank 0: a rank that skipped it would hang the others)."""
    every = trainer.val_check_batch  # in batches: accumulate_grad_batches of them make a step
    due = every not in (None, float("inf")) and trainer.global_step % (every // trainer.accumulate_grad_batches) == 0
    return due or 0 < trainer.max_steps <= trainer.global_step


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
        self.last_step = 0  # with accumulate_grad_batches, several batches end at one step

    def on_train_start(self, trainer, pl_module):
        self.last_step = trainer.global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.tokens += batch[0].numel() * trainer.world_size
        stepped, self.last_step = trainer.global_step != self.last_step, trainer.global_step
        if stepped and trainer.global_step % trainer.log_every_n_steps == 0:
            elapsed = time.perf_counter() - self.start
            pl_module.log("perf/tokens_per_s", self.tokens / elapsed, rank_zero_only=True)
            self.start, self.tokens = None, 0

    def on_validation_start(self, trainer, pl_module):
        self.start, self.tokens = None, 0


class TextSample(L.Callback):
    """After each evaluation, a fixed-seed sample to the run's record (report.py shows the last) and
    TensorBoard's text tab; none with max_new_tokens=0."""

    def __init__(self, max_new_tokens: int = 300, seed: int = 1337):
        self.max_new_tokens, self.seed = max_new_tokens, seed

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero or self.max_new_tokens <= 0:
            return
        text = sample_text(pl_module, self.max_new_tokens, self.seed, stop=functools.partial(stop_requested, trainer))
        if text is None:
            return  # a signal came: the run stops without this evaluation's sample
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # Markdown would swallow Shakespeare's line breaks: indent it as a code block.
                logger.experiment.add_text("sample", "    " + text.replace("\n", "\n    "), trainer.global_step)
            elif isinstance(logger, RunRecord):
                logger.log_sample(text, trainer.global_step)


def sample_text(model, max_new_tokens: int, seed: int, stop=lambda: False) -> str | None:
    """max_new_tokens from token 0 (as the lecture); None when stop() turns true on the way
    (asked before each token)."""
    was_training = model.training
    model.eval()
    start = torch.zeros((1, 1), dtype=torch.long, device=model.device)  # token 0, as the lecture
    generator = torch.Generator(model.device).manual_seed(seed)
    tokens = []
    try:
        for token in model.stream(start, max_new_tokens, generator=generator):
            if stop():
                return None
            tokens.append(token)
    finally:
        model.train(was_training)
    return model.tokenizer.decode(torch.cat(tokens, dim=1)[0].tolist())


class AttentionImage(L.Callback):
    """After each evaluation, the attention maps of a fixed prompt in TensorBoard's Images tab
    (tag attention/map): layers top to bottom, heads left to right, each panel rows = query and
    columns = key, coloured as `python -m shakegpt.attention` draws them, without its labels
    (its figure takes about a second, a v6 run's whole evaluation; this picture milliseconds).
    A text entry, attention/prompt, says which characters the panels show. enabled=false (the
    top-level `attention_images=false`) turns it off; a model without attention (bigram) or a run
    without a TensorBoard logger gets nothing, and a prompt the vocabulary cannot encode turns it
    off with one warning."""

    def __init__(self, prompt: str | None = None, enabled: bool = True):
        self.prompt, self.enabled = prompt or DEFAULT_PROMPT, enabled
        self.described = False

    def on_validation_end(self, trainer, pl_module):
        if not self.enabled or trainer.sanity_checking or not trainer.is_global_zero:
            return
        writers = [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not writers or not attention_layers(pl_module) or not self.prompt_fits(pl_module):
            return
        tokens, maps = attention_maps(pl_module, self.prompt)
        grid = attention_grid(maps).numpy()  # (H, W, 3)
        for writer in writers:
            writer.add_image("attention/map", grid, trainer.global_step, dataformats="HWC")
            if not self.described:
                writer.add_text("attention/prompt", describe_grid(pl_module.tokenizer, tokens, maps), trainer.global_step)
        self.described = True

    def prompt_fits(self, model) -> bool:
        try:
            model.tokenizer.encode(self.prompt)
        except UserError as exc:  # another corpus's vocabulary: say why once, and stop trying
            log.warning("attention images off: the prompt does not fit this model (%s); "
                        "set callbacks.attention_image.prompt", exc)
            self.enabled = False
        return self.enabled


def describe_grid(vocab, tokens: list[int], maps: list) -> str:
    """What the panels of attention/map show, as TensorBoard's text tab renders it (Markdown)."""
    labels = " ".join(f"`{label}`" for label in token_labels(vocab, tokens))
    return (
        f"{len(maps)} layers (top to bottom) x {maps[0].shape[0]} heads (left to right). In each panel "
        f"row = query, column = key, over these {len(tokens)} characters: {labels}. Colour: the attention "
        "weight, 0 dark blue to 1 yellow (viridis); grey: the future, which a position cannot see."
    )


class StepProgressBar(RichProgressBarHooks):
    """Rich bar counting optimizer steps to max_steps (batches with accumulate_grad_batches),
    with ETA: the training stream is endless, so Lightning's default shows no total and
    'Epoch 0/-2'. It redraws at most every `min_interval` seconds: redrawing at every step of a
    tiny model costs more than the step."""

    def __init__(self, min_interval: float = 0.2):
        # refresh_rate: how often per second Rich's drawing thread wakes (Lightning's default, 100,
        # takes the interpreter from the training thread 100 times a second for a bar that changes
        # 5 times a second; paired v6 steps ran 1.8% slower with it).
        super().__init__(refresh_rate=max(1, round(1 / min_interval)))
        self.min_interval = min_interval
        self.last_drawn = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        if now - self.last_drawn >= self.min_interval or trainer.global_step >= trainer.max_steps:
            self.last_drawn = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    @property
    def total_train_batches(self):
        return self.trainer.max_steps * self.trainer.accumulate_grad_batches  # Lightning advances it per batch

    def get_metrics(self, trainer, pl_module) -> dict:
        # Without Lightning's v_num (the loggers' versions joined, "0_" for logger=csv): the run
        # directory names a run.
        return {k: v for k, v in super().get_metrics(trainer, pl_module).items() if k != "v_num"}

    def train_description(self) -> str:
        return "train"

    def on_progress_start(self, console) -> None:
        console.on_broken_pipe = functools.partial(stop_drawing, console)
        if console.is_jupyter:
            keep_streams()


def keep_streams() -> None:
    """Give sys.stdout and sys.stderr back from the proxies Rich's bar puts there while it draws.
    In a Jupyter kernel a proxy's flush prints through IPython's display, which flushes the
    proxy again before it empties: a line written in parts (Ctrl-C's notice) recursed until
    RecursionError failed the run. There the bar draws in a widget of its own, which text
    written meanwhile does not disturb."""
    from rich.file_proxy import FileProxy

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, FileProxy):
            setattr(sys, name, stream.rich_proxied_file)


def stop_drawing(console) -> None:
    """When stdout's reader is gone (`python train.py | tail` ended by Ctrl-C), Rich exits the
    process with status 1, losing the run; instead the bar goes quiet and training goes on."""
    console.quiet = True
    quiet_stdout()
