"""train(cfg): one training run from a composed Hydra config, as lightning-hydra-template's
train(): build the datamodule, model, callbacks, loggers and trainer from the config, fit, and
return the run's figures. What each step relies on lives where its name says: config checks in
checks.py, threads and devices in devices.py, the range test in lr_finder.py, resuming in
bookkeeping/resume.py, metrics.json in metrics.py, a sweep job's signals and failures in job.py."""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from shakegpt.bookkeeping.resume import resume_from
from shakegpt.common.atomic import WriteError, os_reason
from shakegpt.common.errors import UserError
from shakegpt.training import slurm
from shakegpt.training.callbacks import Checkpoint
from shakegpt.training.checkpoint_io import AtomicCheckpointIO
from shakegpt.training.checks import check_config
from shakegpt.training.cli import run_begins
from shakegpt.training.devices import prepare_to_run
from shakegpt.training.interrupts import Interrupted, StopOnSignal
from shakegpt.training.log_filters import quiet_lightning
from shakegpt.training.loggers import build_loggers
from shakegpt.training.lr_finder import find_lr
from shakegpt.training.metrics import record_start, summarise
from shakegpt.training.module import instantiate_trainable
from shakegpt.training.optimizers import optimizer_and_schedule

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    check_config(cfg)
    quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(HydraConfig.get().runtime.output_dir)

    datamodule = instantiate(cfg.data)
    loggers = build_loggers(cfg, out)
    lr = learning_rate(cfg, datamodule, out, loggers)
    if cfg.lr_find and cfg.optimizer.lr != "auto":
        return {"lr_suggestion": lr}  # the range test alone
    model = build_model(cfg, datamodule.tokenizer, lr)
    n_params = prepare_to_run(cfg, model)
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values() if callback is not None]
    checkpoint = needed_callback(callbacks, "best_checkpoint", Checkpoint, "the run's figures and best.ckpt come from it")
    stop = needed_callback(callbacks, "stop_on_signal", StopOnSignal, "Ctrl-C and SIGTERM save last.ckpt through it")
    checkpoint_io = AtomicCheckpointIO()
    # Lightning counts val_check_interval in batches; the config, as the lecture's eval_interval, in steps.
    every = cfg.trainer.val_check_interval * cfg.trainer.accumulate_grad_batches
    trainer = build_trainer(cfg, callbacks=callbacks, logger=loggers, plugins=[checkpoint_io, *slurm.cluster_plugins()],
                            val_check_interval=every)
    record_start(cfg, trainer, datamodule, n_params, out)

    ckpt_path, first_step = resume_from(cfg, out, model)
    run_begins()  # from here a failure is this run's, recorded in its directory; before, the command is undone
    try:
        fit_seconds = fit(trainer, model, datamodule, ckpt_path)
        return summarise(cfg, trainer, datamodule, checkpoint, loggers, out, lr, fit_seconds, first_step)
    except SIGTERMException:  # Lightning's stop on the flag StopOnSignal raised
        raise Interrupted(stop.signum or signal.SIGTERM, trainer.global_step, stop.checkpoint) from None
    except (WriteError, OSError) as exc:  # OSError: TensorBoard's event writer, which has no WriteError
        raise with_last_good(exc, out, checkpoint_io, ckpt_path, first_step) from None


def learning_rate(cfg: DictConfig, datamodule, out: Path, loggers: list) -> float:
    """optimizer.lr, or the range test's suggestion (lr_find=true, or optimizer.lr=auto)."""
    if not (cfg.lr_find or cfg.optimizer.lr == "auto"):
        return cfg.optimizer.lr
    suggestion = find_lr(cfg, build_model(cfg, datamodule.tokenizer, lr=1.0), datamodule, out, loggers)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # the same initial weights as without the test
    return suggestion


def build_model(cfg: DictConfig, tokenizer, lr: float):
    """cfg.model for the data's tokenizer, handed the optimizer (with this learning rate) and
    schedule it trains with."""
    optimizer = OmegaConf.to_container(cfg.optimizer, resolve=True) | {"lr": lr}
    scheduler = OmegaConf.to_container(cfg.scheduler, resolve=True)
    model = instantiate_trainable(
        cfg.model, vocab=tokenizer.chars, tokenizer=tokenizer.kind, optimizer=optimizer, scheduler=scheduler
    )
    model.optimizer_and_schedule = optimizer_and_schedule
    return model


def build_trainer(cfg: DictConfig, **kwargs) -> L.Trainer:
    """cfg.trainer as Lightning's Trainer; a setting Lightning refuses (trainer.precision=foo) is
    one line, Lightning's own sentence, rather than Hydra's report of a failed instantiation."""
    try:
        return instantiate(cfg.trainer, **kwargs)
    except InstantiationException as exc:
        if not isinstance(exc.__cause__, (ValueError, MisconfigurationException)):
            raise
        reason = str(exc.__cause__).strip().splitlines()[0]
        raise UserError(f"Lightning refuses the trainer settings: {reason}") from None


def fit(trainer: L.Trainer, model, datamodule, ckpt_path: str | None) -> float:
    """trainer.fit; its wall seconds."""
    # Imports and setup leave ~400k objects that live as long as the run: freezing them keeps each
    # full garbage collection (0.25 s here, one every ~1000 tiny steps) from scanning them again.
    gc.collect()
    gc.freeze()
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    finally:
        gc.unfreeze()  # the next job of a multirun in this process may collect them again
    return time.perf_counter() - start


def with_last_good(exc: WriteError | OSError, out: Path, checkpoint_io: AtomicCheckpointIO, resumed: str | None, first_step: int):
    """The write error, naming the checkpoint a user can continue from."""
    if isinstance(exc, OSError):
        exc = WriteError(os.fsdecode(exc.filename) if exc.filename else out, os_reason(exc))
    last_good = checkpoint_io.last_good or ((resumed, first_step) if resumed else None)
    if last_good is None:
        note = "no checkpoint was written"
    elif Path(last_good[0]).is_file():
        note = f"the last good checkpoint is {last_good[0]} (step {last_good[1]})"
    else:
        note = f"the last checkpoint written, {last_good[0]} (step {last_good[1]}), is gone too"
    return WriteError(exc.path, exc.reason, note)


def needed_callback(callbacks: list, name: str, kind: type, why: str):
    """The one callback of this kind, which train() itself relies on."""
    found = [c for c in callbacks if type(c) is kind]  # exact: PeriodicCheckpoint is a Checkpoint too
    if not found:
        raise UserError(f"callbacks.{name} cannot be left out: {why}")
    return found[0]
