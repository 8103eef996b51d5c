"""Stream text from a model: the newest checkpoint, the device, the samples written out."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from shakegpt.common.config import check_non_negative_int, check_positive, check_positive_int, check_seed
from shakegpt.common.errors import UserError
from shakegpt.common.run_dirs import run_roots
from shakegpt.common.threads import pick_threads
from shakegpt.models.base import LanguageModel


def newest_checkpoint(roots: tuple[Path, ...] | None = None) -> Path:
    """The most recently written best.ckpt under the run and sweep roots (conf/config.yaml's)."""
    roots = roots or run_roots()
    found = [p for root in roots for p in Path(root).glob("**/checkpoints/best.ckpt")]
    if not found:
        where = " or ".join(f"{root}/" for root in roots)
        raise UserError(f"no checkpoint found under {where} (conf/config.yaml's hydra.run.dir and hydra.sweep.dir): "
                        "train a model first, or pass ckpt=<path>")
    return max(found, key=lambda p: p.stat().st_mtime)


def check_sampling(model: LanguageModel, max_new_tokens, temperature, top_k, num_samples, seed) -> None:
    check_non_negative_int("max_new_tokens", max_new_tokens)
    check_seed("seed", seed)
    check_positive("temperature", temperature)
    if top_k is not None and (not isinstance(top_k, int) or not 1 <= top_k <= len(model.tokenizer)):
        raise UserError(f"top_k must be an integer from 1 to the vocabulary size {len(model.tokenizer)}, got {top_k}")
    check_positive_int("num_samples", num_samples)


def pick_device(name: str) -> torch.device:
    """device=auto is CUDA when there is one, else an Apple GPU, else the CPU, as Lightning's
    accelerator=auto picks; a device named but absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name}") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise UserError(f"device={name}, but this machine has no {device.type} device; use device=auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device={name}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_kv_cache(kv_cache) -> None:
    if not isinstance(kv_cache, bool):
        raise UserError(f"kv_cache must be true or false, got {kv_cache}")


def use_threads(model: LanguageModel, requested: int | None) -> int:
    """Sets torch's CPU threads for sampling from model, and returns them: as requested, else by
    the model's size, training's rule (shakegpt.common.threads)."""
    check_positive_int("threads", requested, or_null=True)
    threads = pick_threads(requested, sum(p.numel() for p in model.parameters()))
    torch.set_num_threads(threads)
    return threads


def write_samples(
    model: LanguageModel,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 1337,
    num_samples: int = 1,
    out=None,
    kv_cache: bool = True,
) -> None:
    """num_samples continuations of prompt, drawn together as one batch on the model's device,
    to out (stdout). A single sample streams character by character (byte models: as each
character's last byte arrives; invalid UTF-8 they generate shows as U+FFFD). kv_cache=False
re-runs the last block_size tokens for every new one, as the lecture does: the same text, slower."""
    out = out or sys.stdout
    start, stream = start_stream(model, prompt, max_new_tokens, temperature, top_k, seed, num_samples, kv_cache)
    if num_samples == 1:
        out.write(prompt)
        decode = model.tokenizer.stream_decoder()  # bytes: a character may take several tokens
        for token in stream:
            out.write(decode(token[0].tolist()))
            out.flush()
        out.write(decode([], final=True) + "\n")
        return
    out.write(("\n" + "-" * 40 + "\n").join(decoded(model, prompt, start, stream)) + "\n")


def sample_texts(model: LanguageModel, prompt: str, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, seed: int = 1337, num_samples: int = 1, kv_cache: bool = True) -> list[str]:
    """num_samples continuations of prompt (each beginning with it), the texts write_samples writes."""
    start, stream = start_stream(model, prompt, max_new_tokens, temperature, top_k, seed, num_samples, kv_cache)
    return decoded(model, prompt, start, stream)


def start_stream(model: LanguageModel, prompt: str, max_new_tokens, temperature, top_k, seed, num_samples, kv_cache=True):
    """(the prompt's tokens for each sample, (num_samples, T); the stream of their next tokens)."""
    check_sampling(model, max_new_tokens, temperature, top_k, num_samples, seed)
    tokens = model.tokenizer.encode(prompt) or [0]  # an empty prompt starts from token 0, as the lecture
    generator = torch.Generator(model.device).manual_seed(seed)
    start = torch.tensor([tokens] * num_samples, device=model.device)
    return start, model.stream(start, max_new_tokens, temperature=temperature, top_k=top_k, generator=generator, kv_cache=kv_cache)


def decoded(model: LanguageModel, prompt: str, start: torch.Tensor, stream) -> list[str]:
    """Each sample's text: the prompt, then what the stream generated for it."""
    generated = torch.cat([start[:, :0], *stream], dim=1).tolist()  # (num_samples, max_new_tokens)
    return [prompt + model.tokenizer.decode(row) for row in generated]
