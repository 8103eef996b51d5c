"""Where a run's steps go: CPU threads per process, the GPU's fast paths, and the device's name."""

from __future__ import annotations

import os

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from shakegpt.common.threads import pick_threads


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
