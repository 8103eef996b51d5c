"""train(cfg): one training run from a composed Hydra config; what train.py and the tests call."""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from shakegpt.bookkeeping.checkpoints import AtomicCheckpointIO, check_resumable
from shakegpt.bookkeeping.resume import last_checkpoint
from shakegpt.bookkeeping.status import write_status
from shakegpt.common.atomic import WriteError, os_reason, write_json
from shakegpt.common.config import check_positive, check_positive_int, flatten
from shakegpt.common.errors import UserError, one_line
from shakegpt.training.callbacks import Checkpoint
from shakegpt.training.cli import continue_command
from shakegpt.training.distributed import job_scope, use_job_subprocess_command
from shakegpt.training.interrupts import Interrupted, StopOnSignal, as_interrupt, record_interrupt, signals_interrupt
from shakegpt.training.lr_finder import check_range, lr_range_test, plot_range_test
from shakegpt.training.optimizers import check_optimizer_numbers, optimizer_and_schedule
from shakegpt.training.schedules import check_schedule

log = logging.getLogger(__name__)

# Below this many parameters a step is too small to split across threads profitably. Measured
# on this 2-core machine: v6 (42k) 5.8 ms/step on 1 or 2 threads; nanoGPT's CPU recipe (0.8M)
# 82 ms on 1 thread, 58 ms on 2.
SINGLE_THREAD_MAX_PARAMS = 100_000


def check_config(cfg: DictConfig) -> None:
    """The numbers a user can get wrong, checked before anything is built or written."""
    lr = cfg.optimizer.lr
    if lr != "auto" and not (isinstance(lr, (int, float)) and lr > 0):
        raise UserError(f"optimizer.lr must be a positive number or 'auto', got {lr}")
    check_optimizer_numbers(cfg.optimizer)
    check_range(**cfg.lr_range_test)
    for key in ("max_steps", "val_check_interval", "log_every_n_steps"):
        check_positive_int(f"trainer.{key}", cfg.trainer.get(key))
    check_schedule(**cfg.scheduler)
    if cfg.resume not in (None, "auto"):
        raise UserError(f"resume must be auto or null, got {cfg.resume}")
    every = cfg.checkpoint
    if (every.every_n_steps is None) == (every.every_minutes is None):
        raise UserError("set exactly one of checkpoint.every_n_steps and checkpoint.every_minutes")
    for key in ("every_n_steps", "every_minutes"):
        if every[key] is not None:
            check_positive(f"checkpoint.{key}", every[key])
    if cfg.compile not in (True, False, "auto"):
        raise UserError(f"compile must be true, false or auto, got {cfg.compile}")
    check_positive_int("threads", cfg.threads, or_null=True)
    check_accelerator(cfg.trainer.accelerator)


def check_accelerator(accelerator: str) -> None:
    """A GPU trainer on a machine without one, in one line rather than Lightning's traceback."""
    has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    if accelerator == "gpu" and not has_gpu or accelerator == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={accelerator} needs a GPU and this machine has none; "
            "use trainer=cpu, or trainer.accelerator=auto to take one where there is one"
        )


def pick_threads(requested: int | None, n_params: int, parallel_jobs: int = 1) -> int:
    """Threads per process: as asked, else 1 for tiny models, else the cores this job may use
    when parallel_jobs share the machine (the joblib launcher)."""
    if requested is not None:
        return requested
    if n_params < SINGLE_THREAD_MAX_PARAMS:
        return 1
    return max(1, (os.cpu_count() or 1) // parallel_jobs)


def parallel_jobs() -> int:
    """How many jobs the launcher runs at once on this machine."""
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = launcher.get("n_jobs", -1)
    return n_jobs if n_jobs and n_jobs > 0 else os.cpu_count() or 1


def use_gpu_fast_path(cfg: DictConfig) -> bool:
    return cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()


def device_name(trainer: L.Trainer) -> str:
    """What ran the steps, whatever trainer.accelerator said (auto, gpu, mps, ...):
    'NVIDIA H100 80GB HBM3 x2', 'Apple GPU (mps)' or 'cpu, 1 thread' (x processes)."""
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{trainer.world_size}"
    if device.type == "mps":
        return "Apple GPU (mps)"
    threads = torch.get_num_threads()
    name = f"cpu, {threads} thread{'s' if threads > 1 else ''}"
    return name if trainer.world_size == 1 else f"{name} x{trainer.world_size} processes"


# What shapes a run's result, for TensorBoard's hparams view; plumbing (callbacks, logger,
# checkpoint timing, class paths, the lecture's reference losses) would bury it.
NOT_HPARAMS = (
    "callbacks.", "logger.", "checkpoint.", "lr_range_test.", "lecture.", "resume", "ckpt_path", "sample_tokens",
    "attention_images",
)


def hparams(cfg: DictConfig, lr: float) -> dict:
    """The config as flat scalars for TensorBoard's hparams view, with the learning rate used."""
    flat = flatten(OmegaConf.to_container(cfg, resolve=True)) | {"optimizer.lr": lr}
    kept = {k: v for k, v in flat.items() if not k.startswith(NOT_HPARAMS) and not k.endswith("_target_")}
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in kept.items()}


def quiet_lightning() -> None:
    """Drop Lightning's advertising tip and a deprecation warning it raises on itself."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # resuming


def train(cfg: DictConfig) -> dict:
    check_config(cfg)
    quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(HydraConfig.get().runtime.output_dir)

    datamodule = instantiate(cfg.data)
    lr = cfg.optimizer.lr
    logger = instantiate(cfg.logger)
    if cfg.lr_find or lr == "auto":
        suggestion = find_lr(cfg, build_model(cfg, datamodule.tokenizer, lr=1.0), datamodule, out, logger)
        if lr != "auto":
            return {"lr_suggestion": suggestion}
        lr = suggestion
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # the same initial weights as without the test

    model = build_model(cfg, datamodule.tokenizer, lr)
    n_params = prepare_to_run(cfg, model)
    checkpoint_io = AtomicCheckpointIO()
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values() if callback is not None]
    checkpoint = needed_callback(callbacks, "best_checkpoint", Checkpoint, "the run's figures and best.ckpt come from it")
    stop = needed_callback(callbacks, "stop_on_signal", StopOnSignal, "Ctrl-C and SIGTERM save last.ckpt through it")
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, plugins=[checkpoint_io])
    write_status(
        out, "running", max_steps=cfg.trainer.max_steps, parameters=n_params, tokens_per_step=step_tokens(trainer, datamodule)
    )
    effective_batch = trainer.world_size * datamodule.batch_size
    log.info(
        "effective batch: %d processes (%d nodes) x %d = %d sequences of %d tokens per step",
        trainer.world_size, trainer.num_nodes, datamodule.batch_size, effective_batch, datamodule.block_size,
    )
    ckpt_path, first_step = resume_from(cfg, out, model)
    try:
        fit_seconds = fit(trainer, model, datamodule, ckpt_path)
        return summarise(cfg, trainer, datamodule, checkpoint, logger, out, lr, fit_seconds, first_step)
    except SIGTERMException:  # Lightning's stop on the flag StopOnSignal raised
        raise Interrupted(stop.signum or signal.SIGTERM, trainer.global_step, stop.checkpoint) from None
    except (WriteError, OSError) as exc:  # OSError: TensorBoard's event writer, which has no WriteError
        raise with_last_good(exc, out, checkpoint_io, ckpt_path, first_step) from None


def prepare_to_run(cfg: DictConfig, model) -> int:
    """Matmul precision, compilation and CPU threads for this model; its parameter count."""
    n_params = sum(p.numel() for p in model.parameters())
    if use_gpu_fast_path(cfg):
        torch.set_float32_matmul_precision("high")  # TF32 matmuls for whatever runs outside bf16 autocast
    if cfg.compile is True or (cfg.compile == "auto" and use_gpu_fast_path(cfg)):
        # In place: the state dict keeps its keys (no `_orig_mod.`), so checkpoints load anywhere.
        model.compile()
    torch.set_num_threads(pick_threads(cfg.threads, n_params, parallel_jobs()))
    return n_params


def step_tokens(trainer: L.Trainer, datamodule) -> int:
    """Tokens one optimizer step trains on, all processes together: the one definition that
    metrics.json, status.json (and through it reports and sweep summaries) count with."""
    return trainer.world_size * datamodule.batch_size * datamodule.block_size


def build_model(cfg: DictConfig, tokenizer, lr: float):
    """cfg.model for the data's tokenizer, handed the optimizer (with this learning rate) and
    schedule it trains with."""
    optimizer = OmegaConf.to_container(cfg.optimizer, resolve=True) | {"lr": lr}
    scheduler = OmegaConf.to_container(cfg.scheduler, resolve=True)
    # Not recursive: the optimizer's config reaches the model as a plain dict, built in
    # configure_optimizers (by optimizer_and_schedule) once the parameters exist.
    model = instantiate(
        cfg.model, vocab=tokenizer.chars, tokenizer=tokenizer.kind, optimizer=optimizer, scheduler=scheduler,
        _convert_="all", _recursive_=False,
    )
    model.optimizer_and_schedule = optimizer_and_schedule
    return model


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


def summarise(cfg, trainer, datamodule, checkpoint, logger, out: Path, lr: float, fit_seconds: float, first_step: int) -> dict:
    """metrics.json, the hparams view's final figures, status finished and the closing line."""
    final = trainer.callback_metrics
    tokens_per_step = step_tokens(trainer, datamodule)
    metrics = {
        "model": HydraConfig.get().runtime.choices.get("model"),
        "parameters": sum(p.numel() for p in trainer.lightning_module.parameters()),
        "lr": lr,
        "steps": trainer.global_step,
        "tokens": trainer.global_step * tokens_per_step,
        "fit_seconds": round(fit_seconds, 2),
        # Over this process's whole fit, evaluations included; reports and sweep summaries
        # show this figure (TensorBoard's perf/tokens_per_s is per interval, evaluations excluded).
        "tokens_per_s": round((trainer.global_step - first_step) * tokens_per_step / fit_seconds, 1),
        "final_train_loss": float(final["train/loss"]),
        "final_val_loss": float(final["val/loss"]),
        "best_val_loss": float(checkpoint.best_model_score),
        "val_perplexity": float(final["val/perplexity"]),
        "final_val_bpc": float(final["val/bpc"]),
        "best_val_bpc": float(checkpoint.best_model_score) / math.log(2),
        "device": device_name(trainer),
        "accelerator": trainer.strategy.root_device.type,  # cpu, cuda or mps: what `auto` chose
        "effective_batch": trainer.world_size * datamodule.batch_size,
    }
    if trainer.is_global_zero:
        logger.log_hyperparams(
            hparams(cfg, lr),
            {"val/loss": metrics["final_val_loss"], "train/loss": metrics["final_train_loss"]},
        )
        logger.finalize("success")
        write_json(out / "metrics.json", metrics)
        write_status(out, "finished", steps=trainer.global_step)
        print(
            f"final: train {metrics['final_train_loss']:.4f}, val {metrics['final_val_loss']:.4f} "
            f"(best {metrics['best_val_loss']:.4f}) after {metrics['steps']} steps in {fit_seconds:.1f}s; "
            f"checkpoints in {checkpoint.dirpath}"
        )
    return metrics


def needed_callback(callbacks: list, name: str, kind: type, why: str):
    """The one callback of this kind, which train() itself relies on."""
    found = [c for c in callbacks if type(c) is kind]  # exact: PeriodicCheckpoint is a Checkpoint too
    if not found:
        raise UserError(f"callbacks.{name} cannot be left out: {why}")
    return found[0]


def resume_from(cfg: DictConfig, out: Path, model) -> tuple[str | None, int]:
    """(checkpoint, its step) this run continues from: with resume=auto this directory's
    last.ckpt (train.py pointed the run at the newest unfinished run of the same command), else
    ckpt_path; (None, 0) for a fresh start. The file must hold this very model."""
    if cfg.resume == "auto" and last_checkpoint(out).is_file():
        path = last_checkpoint(out)
    elif cfg.ckpt_path is not None:
        path = Path(cfg.ckpt_path)
    else:
        if cfg.resume == "auto":
            log.info("resume=auto: no unfinished run of this command with a checkpoint; starting fresh")
        return None, 0
    step = check_resumable(path, model)  # refuses unsafe, corrupted, foreign and other models' files
    if step >= cfg.trainer.max_steps:
        raise UserError(f"{path} is at step {step}, trainer.max_steps={cfg.trainer.max_steps}: raise max_steps to train on")
    log.info("resuming from %s at step %d", path, step)
    return str(path), step


def find_lr(cfg: DictConfig, model, datamodule, out: Path, logger) -> float:
    """Run the range test on a fresh model; plot to lr_find.png and TensorBoard; the suggestion."""
    torch.set_num_threads(pick_threads(cfg.threads, sum(p.numel() for p in model.parameters()), parallel_jobs()))
    result = lr_range_test(model, iter(datamodule.train_dataloader()), **cfg.lr_range_test)
    figure = plot_range_test(result, out / "lr_find.png")
    for step, (log10_lr, loss) in enumerate(zip(result.log10_lrs, result.losses)):
        logger.experiment.add_scalar("lr_find/loss", loss, step)
        logger.experiment.add_scalar("lr_find/log10_lr", log10_lr, step)
    logger.experiment.add_figure("lr_find", figure)
    logger.experiment.flush()
    print(f"learning-rate range test: suggested lr {result.suggestion:.3g}: {result.explanation}; plot {out / 'lr_find.png'}")
    return result.suggestion


def train_job(cfg: DictConfig) -> float:
    """train.py's task: the best validation loss, which sweepers minimise. In a sweep a failing
    job is recorded as failed with its reason and returns NaN, so the other jobs go on; a signal
    stops the job, and the sweep with it, exiting 130 (SIGINT) or 143 (SIGTERM)."""
    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    use_job_subprocess_command()
    received = None
    try:
        with signals_interrupt() as received, job_scope() if hydra_cfg.mode == RunMode.MULTIRUN else contextlib.nullcontext():
            return train(cfg).get("best_val_loss", float("nan"))
    except (Interrupted, Exception) as exc:
        stop = as_interrupt(exc, received)
        if stop is not None:
            record_interrupt(stop, out, continue_command())
            sys.exit(stop.exit_code)
        with contextlib.suppress(UserError, OSError):  # the disk may be what failed
            write_status(out, "failed", reason=one_line(exc))
        if hydra_cfg.mode != RunMode.MULTIRUN:
            raise
        log.error("job %s failed: %s", hydra_cfg.job.num, one_line(exc))
        return float("nan")
