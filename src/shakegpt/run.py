"""train(cfg): one training run from a composed Hydra config; what train.py and the tests call."""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from shakegpt.callbacks import EvaluateAtEnd, StepProgressBar, TextSample, Throughput
from shakegpt.errors import UserError
from shakegpt.schedules import check_schedule

# Below this many parameters a step is too small to split across threads profitably.
SINGLE_THREAD_MAX_PARAMS = 1_000_000


def check_config(cfg: DictConfig) -> None:
    """The numbers a user can get wrong, checked before anything is built or written."""
    if not cfg.optimizer.lr > 0:
        raise UserError(f"optimizer.lr must be positive, got {cfg.optimizer.lr}")
    for key in ("max_steps", "val_check_interval", "log_every_n_steps"):
        value = cfg.trainer.get(key)
        if not isinstance(value, int) or value < 1:
            raise UserError(f"trainer.{key} must be a positive integer, got {value}")
    check_schedule(**cfg.scheduler)
    if cfg.threads is not None and (not isinstance(cfg.threads, int) or cfg.threads < 1):
        raise UserError(f"threads must be a positive integer or null, got {cfg.threads}")


def pick_threads(requested: int | None, n_params: int) -> int:
    if requested is not None:
        return requested
    return 1 if n_params < SINGLE_THREAD_MAX_PARAMS else os.cpu_count() or 1


def device_name(trainer: L.Trainer) -> str:
    """What ran the steps: 'NVIDIA H100 80GB HBM3 x2' or 'cpu, 1 thread' (x processes)."""
    if trainer.strategy.root_device.type == "cuda":
        return f"{torch.cuda.get_device_name(trainer.strategy.root_device)} x{trainer.world_size}"
    threads = torch.get_num_threads()
    name = f"cpu, {threads} thread{'s' if threads > 1 else ''}"
    return name if trainer.world_size == 1 else f"{name} x{trainer.world_size} processes"


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}, lists as strings: TensorBoard's hparams take scalars."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def write_json(path: Path, data: dict) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def quiet_lightning() -> None:
    """Drop Lightning's advertising tip and a deprecation warning it raises on itself."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def train(cfg: DictConfig) -> dict:
    check_config(cfg)
    quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(HydraConfig.get().runtime.output_dir)

    datamodule = instantiate(cfg.data)
    optimizer = OmegaConf.to_container(cfg.optimizer, resolve=True)
    scheduler = OmegaConf.to_container(cfg.scheduler, resolve=True)
    model = instantiate(cfg.model, vocab=datamodule.vocab.chars, **optimizer, scheduler=scheduler, _convert_="all")
    n_params = sum(p.numel() for p in model.parameters())
    torch.set_num_threads(pick_threads(cfg.threads, n_params))

    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best", monitor="val/loss", mode="min", save_last=True
    )
    callbacks = [
        checkpoint,
        EvaluateAtEnd(),
        Throughput(),
        TextSample(cfg.sample_tokens, cfg.seed),
        LearningRateMonitor(logging_interval="step"),
        StepProgressBar(),
    ]
    logger = instantiate(cfg.logger)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)

    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    fit_seconds = time.perf_counter() - start

    final = trainer.callback_metrics
    tokens = trainer.global_step * datamodule.batch_size * datamodule.block_size * trainer.world_size
    metrics = {
        "model": HydraConfig.get().runtime.choices.get("model"),
        "parameters": n_params,
        "steps": trainer.global_step,
        "tokens": tokens,
        "fit_seconds": round(fit_seconds, 2),
        "tokens_per_s": round(tokens / fit_seconds, 1),
        "final_train_loss": float(final["train/loss"]),
        "final_val_loss": float(final["val/loss"]),
        "best_val_loss": float(checkpoint.best_model_score),
        "val_perplexity": float(final["val/perplexity"]),
        "device": device_name(trainer),
    }
    if trainer.is_global_zero:
        logger.log_hyperparams(
            flatten(OmegaConf.to_container(cfg, resolve=True)),
            {"hp/final_val_loss": metrics["final_val_loss"], "hp/best_val_loss": metrics["best_val_loss"]},
        )
        write_json(out / "metrics.json", metrics)
        print(
            f"final: train {metrics['final_train_loss']:.4f}, val {metrics['final_val_loss']:.4f} "
            f"(best {metrics['best_val_loss']:.4f}) after {metrics['steps']} steps in {fit_seconds:.1f}s; "
            f"checkpoints in {checkpoint.dirpath}"
        )
    return metrics
