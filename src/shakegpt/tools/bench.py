"""Throughput benchmark: shakegpt's training loop against a plain PyTorch loop, same model and
batches, in one process; this machine's matmul peak; sampling speed.

    python -m shakegpt.tools.bench                      # v6 and v7 sizes
    python -m shakegpt.tools.bench --sizes v6 --steps 400

Not a test: it prints what it measured and writes it to docs/bench.md (--out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from shakegpt.bookkeeping.flops import flops_per_token
from shakegpt.bookkeeping.runs import read_logged
from shakegpt.common.atomic import write_json
from shakegpt.common.errors import exit_quietly_on_ctrl_c, report_user_errors
from shakegpt.common.paths import PROJECT_ROOT
from shakegpt.data import TrainBatches
from shakegpt.tools.pages import tool_command, write_page
from shakegpt.training.devices import pick_threads
from shakegpt.training.log_filters import quiet_lightning
from shakegpt.training.optimizers import build_optimizer
from shakegpt.training.run import build_model, train

# Steps timed per size (after warm-up), steps per timing interval, rounds of alternating loops,
# and paired steps: v7 steps take 10-15 s here, each moving by 10%, so 12 pairs settle its ratio
# within a few percent. Lightning's own loop, with nothing of shakegpt's around it, is timed at
# the tiny size only, where its cost per step shows.
SIZES = {
    "v6": {"overrides": ["model=v6"], "steps": 600, "interval": 50, "rounds": 3, "paired": 1000, "bare": True},
    "v7": {"overrides": ["model=v7"], "steps": 8, "interval": 2, "rounds": 1, "paired": 12, "bare": False},
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
    return data, build_model(cfg, data.tokenizer, cfg.optimizer.lr)


def lecture_optimizer(model):
    """AdamW as the lecture writes it: torch's defaults (on CPU, one tensor at a time)."""
    return torch.optim.AdamW(model.parameters(), lr=model.hparams.optimizer["lr"])


def shakegpt_optimizer(model):
    return build_optimizer(model, model.hparams.optimizer)


def shakegpt_tokens_per_s(overrides: list[str], steps: int, interval: int) -> list[float]:
    """Run train() as train.py does (progress bar, logging, checkpoints, the final evaluation)
    and read its logged training throughput, evaluation excluded, first interval dropped."""
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose_config(short_run(overrides, steps + interval, interval), Path(run_dir))
        train(cfg)
        scalars, _ = read_logged(Path(run_dir))
        points = scalars["perf/tokens_per_s"]
    return [value for _, value, _ in points[1:]]


def short_run(overrides: list[str], steps: int, log_every: int) -> list[str]:
    return [*overrides, f"trainer.max_steps={steps}", f"trainer.val_check_interval={10 * steps}",
            f"trainer.log_every_n_steps={log_every}", "data.eval_iters=1", "sample_tokens=1"]


def plain_step(model, optimizer, batch) -> None:
    """One step of a plain PyTorch loop, as the lecture writes it."""
    loss = model.loss(*batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def plain_tokens_per_s(overrides: list[str], steps: int, interval: int, make_optimizer=shakegpt_optimizer) -> list[float]:
    """The same model and batches in a bare PyTorch loop."""
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose_config(overrides, Path(run_dir))
        torch.manual_seed(cfg.seed)
        data, model = build(cfg)
        torch.set_num_threads(pick_threads(cfg.threads, sum(p.numel() for p in model.parameters())))
        optimizer = make_optimizer(model)
        batches = iter(TrainBatches(data.train_data, data.batch_size, data.block_size, cfg.seed, lambda: (0, 0)))
        tokens_per_step = data.batch_size * data.block_size
        rates = []
        for i in range(steps + interval):
            if i % interval == 0:
                start = time.perf_counter()
            plain_step(model, optimizer, next(batches))
            if i % interval == interval - 1:
                rates.append(interval * tokens_per_step / (time.perf_counter() - start))
    return rates[1:]


class PairedPlainSteps(L.Callback):
    """Before each of shakegpt's training steps, one step of a plain PyTorch loop on a twin of
    the model (same weights, optimizer and batches), timed apart from it. Both loops then run
    on the same machine state, step by step, so their ratio is free of this machine's speed
    drift, which moves separate runs by 20% or more. Writes paired_steps.json into the run."""

    def __init__(self, skip: int = 5):
        self.skip = skip  # warm-up steps, not timed
        self.plain, self.shakegpt = [], []
        self.plain_ended = None  # None after an evaluation: evaluation is not training time

    def on_train_start(self, trainer, pl_module):
        self.twin = type(pl_module)(**pl_module.hparams)
        self.twin.load_state_dict(pl_module.state_dict())
        self.optimizer = shakegpt_optimizer(self.twin)
        data = trainer.datamodule
        self.batches = iter(TrainBatches(data.train_data, data.batch_size, data.block_size, data.seed, lambda: (0, 0)))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        start = time.perf_counter()
        timed = trainer.global_step >= self.skip
        if timed and self.plain_ended is not None:
            self.shakegpt.append(start - self.plain_ended)
        plain_step(self.twin, self.optimizer, next(self.batches))
        self.plain_ended = time.perf_counter()
        if timed:
            self.plain.append(self.plain_ended - start)

    def on_validation_start(self, trainer, pl_module):
        self.plain_ended = None

    def on_train_end(self, trainer, pl_module):
        write_json(Path(trainer.default_root_dir) / "paired_steps.json", {"plain_s": self.plain, "shakegpt_s": self.shakegpt})


def read_paired_ratio(run_dir: Path) -> tuple[float, int]:
    """(the Lightning loop's steps/s over the plain loop's, steps compared) from paired_steps.json."""
    times = json.loads((run_dir / "paired_steps.json").read_text())
    return sum(times["plain_s"]) / sum(times["shakegpt_s"]), len(times["shakegpt_s"])


def paired_ratio(overrides: list[str], steps: int, skip: int) -> tuple[float, int]:
    """(shakegpt's steps/s over the plain loop's, steps compared) from paired steps."""
    with tempfile.TemporaryDirectory() as run_dir:
        callback = f"+callbacks.paired={{_target_: {PairedPlainSteps.__module__}.PairedPlainSteps, skip: {skip}}}"
        cfg = compose_config([*short_run(overrides, steps + skip, max(1, steps // 10)), callback], Path(run_dir))
        train(cfg)
        return read_paired_ratio(Path(run_dir))


class ManualOptimization:
    """Mixed into a model class: the same step with Lightning's manual optimization (the step
    calls backward and the optimizer itself), which skips the closure automatic optimization
    builds around every step."""

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = self.loss(*batch)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        return loss

    def configure_optimizers(self):
        return shakegpt_optimizer(self)


def bare_lightning_ratio(overrides: list[str], steps: int, skip: int, manual: bool) -> tuple[float, int]:
    """paired_ratio for Lightning's own loop with nothing added: no logger, progress bar,
    checkpoints, evaluation or callbacks of shakegpt's, the model and batches as train() has them."""
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose_config(overrides, Path(run_dir))
        torch.manual_seed(cfg.seed)
        data, model = build(cfg)
        if manual:
            model = type("Manual" + type(model).__name__, (ManualOptimization, type(model)), {})(**model.hparams)
        torch.set_num_threads(pick_threads(cfg.threads, sum(p.numel() for p in model.parameters())))
        quiet_lightning()
        trainer = L.Trainer(
            accelerator="cpu", max_steps=steps + skip, limit_val_batches=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[PairedPlainSteps(skip)],
            default_root_dir=run_dir,
        )
        trainer.fit(model, datamodule=data)
        return read_paired_ratio(Path(run_dir))


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_peak(dtype: torch.dtype, threads: int, n: int = 2048, repeats: int = 10, device: str | torch.device = "cpu") -> float:
    """FLOP/s of an n x n matmul on this machine (on device), best of `repeats`."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(a.device)
        start = time.perf_counter()
        a @ b
        synchronize(a.device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def synchronize(device: torch.device) -> None:
    """Wait for a GPU's queued work, so that a timer around it measures it (the CPU's is done)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


@report_user_errors  # a user error in one line; `| head` ends it quietly
def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    threads = torch.get_num_threads()
    # This machine's speed drifts by 20-40% over minutes: the peak is the best of a measurement
    # before the loops and one after them.
    # bf16's peak only for --bf16's rows: on a CPU without bf16 units its matmuls take minutes.
    dtypes = {name: DTYPES[name] for name in ("fp32", "bf16") if name == "fp32" or args.bf16}
    peaks = {name: matmul_peak(dtype, threads) for name, dtype in dtypes.items()}
    measured = [measure_size(size, args.steps, args.bf16) for size in args.sizes]
    peaks = {name: max(peak, matmul_peak(DTYPES[name], threads)) for name, peak in peaks.items()}
    command = tool_command("bench", sys.argv[1:] if argv is None else argv)
    print(write_page(args.out, "Throughput", command, bench_page(threads, peaks, measured)))


def measure_size(size: str, steps: int | None, bf16: bool) -> dict:
    """One size's table rows, paired framework-cost lines and sampling line."""
    spec = SIZES[size]
    steps = steps or spec["steps"]
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose_config(spec["overrides"], Path(run_dir))
        _, model = build(cfg)
    flops = flops_per_token(sum(p.numel() for p in model.parameters()), OmegaConf.to_container(cfg))
    tokens_per_step = cfg.data.batch_size * cfg.data.block_size
    loops = {
        "plain PyTorch, AdamW as in the lecture": ("fp32", lambda: plain_tokens_per_s(
            spec["overrides"], steps, spec["interval"], lecture_optimizer)),
        "plain PyTorch, shakegpt's fused AdamW": ("fp32", lambda: plain_tokens_per_s(
            spec["overrides"], steps, spec["interval"], shakegpt_optimizer)),
        "shakegpt fp32": ("fp32", lambda: shakegpt_tokens_per_s(spec["overrides"], steps, spec["interval"])),
    }
    if bf16:
        loops["shakegpt bf16-mixed"] = ("bf16", lambda: shakegpt_tokens_per_s(
            [*spec["overrides"], "trainer.precision=bf16-mixed"], steps, spec["interval"]))
    # Alternate the loops for `rounds` rounds, each ratio comparing runs taken back to back.
    rates = {name: [] for name in loops}
    for _ in range(spec["rounds"]):
        for name, (_, measure) in loops.items():
            rates[name].append(statistics.median(measure()))
    lecture = rates["plain PyTorch, AdamW as in the lecture"]
    rows = []
    for name, (dtype, _) in loops.items():
        rate = statistics.median(rates[name])
        ratio = statistics.median(r / p for r, p in zip(rates[name], lecture))
        rows.append((size, name, rate, tokens_per_step, ratio, flops * rate, dtype))
    return {"rows": rows, "paired": paired_lines(size, spec), "sampling":
            f"- {size}: sampling {sampling_tokens_per_s(spec['overrides']):,.0f} tokens/s (batch 1, 300 tokens)"}


def paired_lines(size: str, spec: dict) -> list[str]:
    ratio, compared = paired_ratio(spec["overrides"], spec["paired"], skip=2 if size == "v7" else 20)
    lines = [f"- {size}: shakegpt's steps/s = {ratio:.3f} x the plain loop's ({compared} paired steps)"]
    if spec["bare"]:
        ours = ratio
        for manual, loop in ((False, "automatic"), (True, "manual")):
            ratio, compared = bare_lightning_ratio(spec["overrides"], spec["paired"], skip=20, manual=manual)
            lines.append(f"- {size}: Lightning's bare loop, {loop} optimization: steps/s = {ratio:.3f} "
                         f"x the plain loop's ({compared} paired steps)")
            if not manual:  # what shakegpt adds to every step over any Lightning run
                lines.append(f"- {size}: shakegpt's steps/s = {ours / ratio:.3f} x Lightning's bare loop's (automatic optimization)")
    return lines


def bench_page(threads: int, peaks: dict, measured: list[dict]) -> list[str]:
    peak_line = (f"matmul peak on this machine ({threads} threads, 2048 x 2048, best of 10 before the loops and 10 after): "
                 + ", ".join(f"{name} {peak / 1e9:.3g} GFLOP/s" for name, peak in peaks.items()))
    lines = [
        "Each loop trains the same model on the same batches in one process; tokens/s is the median over timing intervals (evaluation excluded), ratios the median over alternating rounds.",
        "shakegpt's loop is train.py's (progress bar, logging, checkpoints); the plain loop is forward, backward, AdamW:",
        "once with AdamW as the lecture writes it (torch's defaults), once with shakegpt's fused AdamW.",
        "",
        peak_line,
        "",
        "| size | loop | tokens/s | steps/s | ratio to the lecture's plain loop | MFU (of the measured matmul peak) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {size} | {name} | {rate:,.0f} | {rate / tokens_per_step:.3g} | {ratio:.3f} | {100 * flop_rate / peaks[dtype]:.1f}% |"
        for m in measured for size, name, rate, tokens_per_step, ratio, flop_rate, dtype in m["rows"]
    ]
    lines += [
        "",
        "Framework cost on identical steps: in one train.py run, a plain-loop step of a twin model (same weights,",
        "fused AdamW and batches) before each of shakegpt's steps, both timed (evaluation excluded). Separate runs",
        "above drift with this machine's speed; paired steps do not. Lightning's bare loop is a Trainer with nothing",
        "of shakegpt's (no logger, progress bar, checkpoints, evaluation or callbacks) on the same model and",
        "batches, paired the same way: what any Lightning run costs over the plain loop.",
        "",
        *(line for m in measured for line in m["paired"]),
        "",
        *(m["sampling"] for m in measured),
    ]
    return lines


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
