"""A finished run's figures: metrics.json, the HParams tab's row, status finished, the closing line."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig

from shakegpt.bookkeeping.status import write_status
from shakegpt.common.atomic import write_json
from shakegpt.training.devices import device_name
from shakegpt.training.loggers import hparams, log_final

log = logging.getLogger(__name__)


def step_tokens(trainer: L.Trainer, datamodule) -> int:
    """Tokens one optimizer step trains on, all processes and accumulated batches together: the
    one definition that metrics.json, status.json (and through it reports and sweep summaries) count with."""
    return effective_batch(trainer, datamodule) * datamodule.block_size


def effective_batch(trainer: L.Trainer, datamodule) -> int:
    """Sequences per optimizer step: each process's batches over accumulate_grad_batches."""
    return trainer.world_size * trainer.accumulate_grad_batches * datamodule.batch_size


def record_start(cfg, trainer: L.Trainer, datamodule, n_params: int, out: Path) -> None:
    """status.json says running, with what reports count progress by; the log states the batch."""
    write_status(
        out, "running", max_steps=cfg.trainer.max_steps, parameters=n_params, tokens_per_step=step_tokens(trainer, datamodule)
    )
    accumulated = f" x {trainer.accumulate_grad_batches} accumulated" if trainer.accumulate_grad_batches > 1 else ""
    log.info(
        "effective batch: %d processes (%d nodes)%s x %d = %d sequences of %d tokens per step",
        trainer.world_size, trainer.num_nodes, accumulated, datamodule.batch_size,
        effective_batch(trainer, datamodule), datamodule.block_size,
    )


def summarise(cfg, trainer, datamodule, checkpoint, loggers, out: Path, lr: float, fit_seconds: float, first_step: int) -> dict:
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
        "effective_batch": effective_batch(trainer, datamodule),
    }
    if trainer.is_global_zero:
        log_final(
            loggers, hparams(cfg, lr), {"val/loss": metrics["final_val_loss"], "train/loss": metrics["final_train_loss"]}
        )
        write_json(out / "metrics.json", metrics)
        write_status(out, "finished", steps=trainer.global_step)
        print(
            f"final: train {metrics['final_train_loss']:.4f}, val {metrics['final_val_loss']:.4f} "
            f"(best {metrics['best_val_loss']:.4f}) after {metrics['steps']} steps in {fit_seconds:.1f}s; "
            f"checkpoints in {checkpoint.dirpath}"
        )
    return metrics
