"""Sampling speed: characters per second with the KV cache and without (the lecture's loop, which
re-runs the last block_size characters for each new one), on 1 and 2 CPU threads, against the
FLOPs each character needs and this machine's measured matmul peak.

    python -m shakegpt.tools.sampling_bench                  # v6, v7, v12 sizes: docs/sampling.md
    python -m shakegpt.tools.sampling_bench --quick --out /tmp/sampling.md   # seconds: a check, not a measurement

Every combination runs in one process, cached and uncached back to back, so their ratios are
comparable. The models are each version's conf/model/<v>.yaml size with random weights: the
speed of a forward pass does not depend on the values of its weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from shakegpt.bookkeeping.flops import flops_per_token
from shakegpt.common.errors import report_user_errors
from shakegpt.common.paths import CONFIG_DIR, DOCS_DIR
from shakegpt.data import CharTokenizer, read_corpus
from shakegpt.models.versions import BY_PATH
from shakegpt.sampling.generate import pick_device
from shakegpt.tools.bench import matmul_peak, synchronize
from shakegpt.tools.pages import tool_command, write_page

PROMPTS = {"short": "1 character", "block": "block_size characters"}
MIN_SECONDS = 1.0  # a fast case is repeated until its runs take this long (at most 5 runs): the median


def build(version: str):
    """(a random-weight model of the version's configured size in eval mode, its config as a dict)."""
    config = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{version}.yaml"), resolve=True)
    settings = dict(config["model"])
    cls = BY_PATH[settings.pop("_target_")]
    torch.manual_seed(0)
    vocab = CharTokenizer.from_text(read_corpus(None)).chars
    return cls(vocab, **settings).eval(), config


def forward_flops(model, config: dict) -> float:
    """One position's forward at a full block_size context: a third of the training estimate."""
    return flops_per_token(sum(p.numel() for p in model.parameters()), config) / 3


def chars_per_s(model, prompt: torch.Tensor, new_tokens: int, kv_cache: bool, min_seconds: float) -> float:
    """New characters per second of model.stream from prompt (1, T), the median of the runs."""
    rates, spent = [], 0.0
    while not rates or (spent < min_seconds and len(rates) < 5):
        generator = torch.Generator(prompt.device).manual_seed(1337)
        synchronize(prompt.device)
        start = time.perf_counter()
        for _ in model.stream(prompt, new_tokens, generator=generator, kv_cache=kv_cache):
            pass
        synchronize(prompt.device)
        elapsed = time.perf_counter() - start
        rates.append(new_tokens / elapsed)
        spent += elapsed
    return statistics.median(rates)


def measure(version: str, args, device: torch.device) -> tuple[float, list[tuple]]:
    """(FLOPs per character, rows (version, prompt, new, threads, cached, uncached))."""
    model, config = build(version)
    model.to(device)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for prompt_kind in args.prompts:
            length = 1 if prompt_kind == "short" else model.block_size
            prompt = torch.zeros((1, length), dtype=torch.long, device=device)  # token 0, as the lecture starts
            for new in args.new_tokens:
                cached = chars_per_s(model, prompt, new, True, args.min_seconds)
                uncached = chars_per_s(model, prompt, new, False, args.min_seconds)
                rows.append((version, prompt_kind, new, threads, cached, uncached))
                print(f"{version} {prompt_kind} +{new} {threads}t: cached {cached:,.1f}/s uncached {uncached:,.1f}/s", flush=True)
    return forward_flops(model, config), rows


def page(device: torch.device, peaks: dict[int, float], matmul: int, flops: dict[str, float], rows: list[tuple]) -> list[str]:
    lines = [
        "",
        f"Device: {device.type}. Models: each version's conf/model size with random weights (the speed does not "
        "depend on their values). Prompt: token 0 alone (short) or block_size tokens (block).",
        "",
        "Cached: each attention layer keeps the keys and values seen (`kv_cache=true`, the default); uncached: the "
        "lecture's loop, the whole last block_size characters for each new one (`kv_cache=false`). Both write the "
        "same text. Past block_size the window slides and every position is recomputed in both: the cache gains on "
        "the characters before that.",
        "",
        "Characters per second are the median of runs of one sample (batch 1); cached and uncached run back to back.",
        "",
        f"Matmul peak (fp32, {matmul} x {matmul}, best of several): "
        + ", ".join(f"{peak / 1e9:.3g} GFLOP/s on {threads} thread{'s' * (threads > 1)}" for threads, peak in peaks.items()),
        "",
        "FLOPs per character: one position's forward at a full block_size context, 2 x parameters + 4 x n_layer x "
        "n_embd x block_size (a third of the training estimate of shakegpt.bookkeeping.flops). The limit is the "
        "peak divided by it: the characters per second a machine running at its matmul peak would write.",
        "",
        *(f"- {version}: {f / 1e6:.3g} MFLOPs per character" for version, f in flops.items()),
        "",
        "| size | prompt | new characters | threads | cached chars/s | uncached chars/s | cached / uncached | cached, % of the limit |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for version, prompt, new, threads, cached, uncached in rows:
        limit = peaks[threads] / flops[version]
        lines.append(f"| {version} | {prompt} | {new:,} | {threads} | {cached:,.1f} | {uncached:,.1f} | "
                     f"{cached / uncached:.1f}x | {100 * cached / limit:.2g}% |")
    return lines


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    versions = sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))
    parser.add_argument("--sizes", nargs="+", default=["v6", "v7", "v12"], choices=versions, help="versions whose conf/model size to time")
    parser.add_argument("--new-tokens", nargs="+", type=int, default=[256, 1000], help="characters to generate")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="CPU thread counts")
    parser.add_argument("--prompts", nargs="+", default=list(PROMPTS), choices=list(PROMPTS))
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    parser.add_argument("--min-seconds", type=float, default=MIN_SECONDS, help="repeat a fast case until its runs take this long")
    parser.add_argument("--quick", action="store_true", help="v6 only, 20 characters, 1 thread, a small matmul: checks that the tool runs")
    parser.add_argument("--out", type=Path, default=DOCS_DIR / "sampling.md", help="where the page goes")
    return parser


@report_user_errors  # a user error in one line; `| head` ends it quietly
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = make_parser().parse_args(argv)
    if args.quick:
        args.sizes, args.new_tokens, args.threads, args.min_seconds = ["v6"], [20], [1], 0.0
    device = pick_device(args.device)
    size, repeats = (256, 2) if args.quick else (2048, 10)
    peaks = {threads: matmul_peak(torch.float32, threads, size, repeats, device) for threads in args.threads}
    flops, rows = {}, []
    for version in args.sizes:
        flops[version], measured = measure(version, args, device)
        rows += measured
    print(write_page(args.out, "Sampling speed", tool_command("sampling_bench", argv), page(device, peaks, size, flops, rows)))


if __name__ == "__main__":
    main()
