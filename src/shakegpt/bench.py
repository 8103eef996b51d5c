"""Throughput benchmark: shakegpt's training loop against a plain PyTorch loop, same model and
batches, in one process; this machine's matmul peak; sampling speed.

    python -m shakegpt.bench                      # v6 and v7 sizes
    python -m shakegpt.bench --sizes v6 --steps 400

Not a test: it prints a table of what it measured (figures for docs/results.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from shakegpt.data import PROJECT_ROOT, TrainBatches
from shakegpt.report import flops_per_token, read_events
from shakegpt.run import pick_threads, train

# Steps timed per size (after warm-up), steps per timing interval, and rounds of alternating
# loops: v7 steps take seconds here.
SIZES = {
    "v6": {"overrides": ["model=v6"], "steps": 600, "interval": 50, "rounds": 5},
    "v7": {"overrides": ["model=v7"], "steps": 8, "interval": 2, "rounds": 1},
}


def compose_config(overrides: list[str], run_dir: Path):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"hydra.run.dir={run_dir}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)  # set by @hydra.main, not by compose
        HydraConfig.instance().set_config(cfg)
        del cfg["hydra"]  # as @hydra.main hands the task its config
    return cfg


def build(cfg):
    """(datamodule, model) as train() builds them."""
    data = instantiate(cfg.data)
    return data, instantiate(cfg.model, vocab=data.vocab.chars, lr=cfg.optimizer.lr, _convert_="all")


def shakegpt_tokens_per_s(overrides: list[str], steps: int, interval: int) -> list[float]:
    """Run train() as train.py does (progress bar, logging, checkpoints, the final evaluation)
    and read its logged training throughput, evaluation excluded, first interval dropped."""
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose_config(
            [*overrides, f"trainer.max_steps={steps + interval}", f"trainer.val_check_interval={10 * steps}",
             f"trainer.log_every_n_steps={interval}", "data.eval_iters=1", "sample_tokens=1"],
            Path(run_dir),
        )
        train(cfg)
        scalars, _ = read_events(Path(run_dir) / "tensorboard")
        points = scalars["perf/tokens_per_s"]
    return [value for _, value, _ in points[1:]]


def plain_tokens_per_s(overrides: list[str], steps: int, interval: int) -> list[float]:
    """The same model, optimizer and batches in a bare PyTorch loop."""
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose_config(overrides, Path(run_dir))
        torch.manual_seed(cfg.seed)
        data, model = build(cfg)
        torch.set_num_threads(pick_threads(cfg.threads, sum(p.numel() for p in model.parameters())))
        optimizer = model.make_optimizer()
        batches = iter(TrainBatches(data.train_data, data.batch_size, data.block_size, cfg.seed, lambda: (0, 0)))
        tokens_per_step = data.batch_size * data.block_size
        rates = []
        for i in range(steps + interval):
            if i % interval == 0:
                start = time.perf_counter()
            loss = model.loss(*next(batches))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if i % interval == interval - 1:
                rates.append(interval * tokens_per_step / (time.perf_counter() - start))
    return rates[1:]


def matmul_peak(dtype: torch.dtype, threads: int, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of an n x n matmul on this machine, best of `repeats`."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def sampling_tokens_per_s(overrides: list[str], tokens: int = 300) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        _, model = build(compose_config(overrides, Path(run_dir)))
        model.eval()
        start = time.perf_counter()
        model.generate(torch.zeros((1, 1), dtype=torch.long), tokens)
        return tokens / (time.perf_counter() - start)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--steps", type=int, help="timed steps per loop (default: per size)")
    parser.add_argument("--bf16", action="store_true", help="also time shakegpt with trainer.precision=bf16-mixed")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "bench.md", help="where the table goes")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)

    threads = torch.get_num_threads()
    peaks = {"fp32": matmul_peak(torch.float32, threads), "bf16": matmul_peak(torch.bfloat16, threads)}
    peak_line = (f"matmul peak on this machine ({threads} threads, 2048 x 2048, best of 10): "
                 f"fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    print(peak_line)
    sampling = []
    rows = []
    for size in args.sizes:
        spec = SIZES[size]
        steps = args.steps or spec["steps"]
        with tempfile.TemporaryDirectory() as run_dir:
            cfg = compose_config(spec["overrides"], Path(run_dir))
            _, model = build(cfg)
        flops = flops_per_token(sum(p.numel() for p in model.parameters()), OmegaConf.to_container(cfg))
        tokens_per_step = cfg.data.batch_size * cfg.data.block_size
        loops = [("shakegpt fp32", spec["overrides"], "fp32")]
        if args.bf16:
            loops.append(("shakegpt bf16-mixed", [*spec["overrides"], "trainer.precision=bf16-mixed"], "bf16"))
        # Alternate the loops for `rounds` rounds: this machine's speed drifts between minutes,
        # and each ratio compares measurements taken back to back.
        rates = {name: [] for name in ["plain PyTorch fp32", *(name for name, _, _ in loops)]}
        for _ in range(spec["rounds"]):
            rates["plain PyTorch fp32"].append(statistics.median(plain_tokens_per_s(spec["overrides"], steps, spec["interval"])))
            for name, overrides, _ in loops:
                rates[name].append(statistics.median(shakegpt_tokens_per_s(overrides, steps, spec["interval"])))
        plain = rates["plain PyTorch fp32"]
        rows.append((size, "plain PyTorch fp32", statistics.median(plain), tokens_per_step, 1.0, flops * statistics.median(plain) / peaks["fp32"]))
        for name, _, dtype in loops:
            ratio = statistics.median(r / p for r, p in zip(rates[name], plain))
            rate = statistics.median(rates[name])
            rows.append((size, name, rate, tokens_per_step, ratio, flops * rate / peaks[dtype]))
        sampling.append(f"- {size}: sampling {sampling_tokens_per_s(spec['overrides']):,.0f} tokens/s (batch 1, 300 tokens)")

    lines = [
        "# Throughput",
        "",
        f"Written by `python -m shakegpt.bench {' '.join(argv if argv is not None else sys.argv[1:])}` on "
        f"{date.today().isoformat()}: each loop trains the same model on the same batches in one process; tokens/s is",
        "the median over timing intervals (evaluation excluded), ratios the median over alternating rounds.",
        "shakegpt's loop is train.py's (progress bar, logging, checkpoints); the plain loop is forward, backward, AdamW.",
        "",
        peak_line,
        "",
        "| size | loop | tokens/s | steps/s | ratio to plain loop | MFU (of the measured matmul peak) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {size} | {name} | {rate:,.0f} | {rate / tokens_per_step:.3g} | {ratio:.3f} | {100 * mfu:.1f}% |"
        for size, name, rate, tokens_per_step, ratio, mfu in rows
    ]
    lines += ["", *sampling]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
