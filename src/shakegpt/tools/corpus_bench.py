"""Corpus benchmark: what a 100 MB and a 1 GB corpus cost, from the first prepare to training.

    python -m shakegpt.tools.corpus_bench                      # generates 100MB and 1GB corpora
    python -m shakegpt.tools.corpus_bench --sizes 100MB --ddp  # and a 2-process ddp_cpu run
    python -m shakegpt.tools.corpus_bench --sizes --source enwik8 --tokenizer byte   # a corpus of your own

For each corpus, each step in a fresh process: the first prepare into an empty cache (time,
peak RSS), a later start-up (building the datamodule to its first batch, imports excluded),
and `python train.py model=v6 data.path=<it> trainer.max_steps=20` (peak RSS, wall time). With
--ddp, the same run as trainer=ddp_cpu, its ranks' memory sampled from /proc: each rank maps
the one token file, so their combined PSS (shared pages counted once) stays far below their
RSS summed. Generated corpora are Tiny Shakespeare interleaved with 6,937 CJK ideographs
(about 7,000 distinct characters, as a large multilingual corpus has), written once under --dir.
Not a test: it prints what it measured and writes docs/corpora.md (--out).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from shakegpt.common.errors import UserError, exit_quietly_on_ctrl_c, report_user_errors
from shakegpt.common.paths import PROJECT_ROOT
from shakegpt.data.corpus import DEFAULT_CORPUS
from shakegpt.tools.pages import tool_command, write_page
from shakegpt.tools.runner import train_command

UNITS = {"MB": 10**6, "GB": 10**9}
RARE = [chr(c) for c in range(0x4E00, 0x4E00 + 6937)]
STEPS = ["trainer.max_steps=20", "trainer.val_check_interval=20", "data.eval_iters=20", "sample_tokens=0"]

PREPARE = """
import sys, time
from shakegpt.data import prepare_corpus
start = time.perf_counter()
corpus = prepare_corpus(sys.argv[1], sys.argv[3], sys.argv[2])
print(time.perf_counter() - start, len(corpus.tokenizer), len(corpus.tokens), corpus.meta["dtype"])
"""
STARTUP = """
import sys, time
from shakegpt.data import CorpusDataModule
start = time.perf_counter()
data = CorpusDataModule(path=sys.argv[1], cache_dir=sys.argv[2], tokenizer=sys.argv[3], batch_size=32, block_size=64)
next(iter(data.train_dataloader()))
print(time.perf_counter() - start)
"""


def parse_size(text: str) -> int:
    number, unit = text[:-2], text[-2:].upper()
    if unit not in UNITS or not number.replace(".", "", 1).isdigit():
        raise UserError(f"a size is a number and MB or GB, e.g. 100MB or 1GB, got {text}")
    return int(float(number) * UNITS[unit])


def generate_corpus(path: Path, size: int) -> Path:
    """A UTF-8 file of exactly `size` bytes (unless a character would be cut: then a few less)."""
    if path.is_file() and path.stat().st_size >= size - 4:
        return path
    rng = np.random.default_rng(0)
    shakespeare = DEFAULT_CORPUS.read_text()
    path.parent.mkdir(parents=True, exist_ok=True)
    written, part = 0, 0
    with open(path.with_suffix(".partial"), "wb") as out:
        while written < size:
            block = (f"== part {part} ==\n{shakespeare}" + "".join(rng.permutation(RARE)) + "\n").encode()
            block = block[: size - written].decode("utf-8", errors="ignore").encode()  # whole characters
            out.write(block)
            written, part = written + len(block), part + 1
            if len(block) == 0:
                break
    os.replace(path.with_suffix(".partial"), path)
    return path


def run_measured(command: list[str]) -> tuple[int, float, float, str, dict]:
    """(exit code, wall seconds, peak RSS in MB, output, memory) of a command in its own
    process; memory: its process tree's figures (tree_memory) when their RSS summed peaked."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = threading.Thread(target=lambda: setattr(process, "captured", process.stdout.read()))
    output.start()
    peak = {"rss": 0}
    while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        sample = tree_memory(process.pid)
        peak = sample if sample["rss"] > peak["rss"] else peak
        time.sleep(0.2)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    output.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, wall, usage.ru_maxrss / 1024, process.captured.decode(errors="replace"), peak


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def measure_corpus(path: Path, cache: Path, runs: Path, tokenizer: str) -> dict:
    """Every figure of one row; cache: this corpus's own, emptied first."""
    shutil.rmtree(cache, ignore_errors=True)
    code, wall, rss, out, _ = run_measured(python(PREPARE, str(path), str(cache), tokenizer))
    if code:
        raise UserError(f"preparing {path} failed: {out.strip().splitlines()[-1]}")
    seconds, vocab, tokens, dtype = out.split()[-4:]
    row = {"corpus": path.name, "bytes": path.stat().st_size, "vocab": int(vocab), "tokens": int(tokens),
           "dtype": dtype, "prepare_s": float(seconds), "prepare_rss": rss}
    code, _, _, out, _ = run_measured(python(STARTUP, str(path), str(cache), tokenizer))
    row["startup_s"] = float(out.split()[-1]) if code == 0 else None
    train = corpus_train_command(path, cache, runs, f"data.tokenizer={tokenizer}")
    code, row["train_s"], row["train_rss"], out, row["memory"] = run_measured(train)
    row["trained"] = code == 0
    if code:
        print(out[-2000:], file=sys.stderr)
    return row


def process_memory(pid: int) -> dict:
    """One process's RSS and PSS, and the RSS and PSS of its mapping of tokens.bin, in kB."""
    figures = {"rss": 0, "pss": 0, "map_rss": 0, "map_pss": 0, "maps": 0}
    mapping = False
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping's header line: address perms ... path
                mapping = fields[-1].endswith("tokens.bin")
                figures["maps"] |= mapping
            elif fields[0] in ("Rss:", "Pss:"):
                key = fields[0][:-1].lower()
                figures[key] += int(fields[1])
                if mapping:
                    figures[f"map_{key}"] += int(fields[1])
    return figures


def tree_memory(pid: int) -> dict:
    """Summed over a process and its descendants (a DDP run's ranks): RSS, PSS (shared pages
    counted once over all processes), and the same for their mappings of the token file."""
    total = {"rss": 0, "pss": 0, "map_rss": 0, "map_pss": 0, "maps": 0}
    for member in [pid, *descendants(pid)]:
        try:
            figures = process_memory(member)
        except (OSError, ValueError, IndexError):  # it ended meanwhile
            continue
        total = {key: total[key] + figures[key] for key in total}
    return total


def descendants(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return children + [d for c in children for d in descendants(c)]


def corpus_train_command(path: Path, cache: Path, runs: Path, *extra: str) -> list[str]:
    """The runner's train.py command for this corpus, run by this interpreter (measured, so not
    through run_training: this tool samples the process tree's memory while it runs)."""
    run_dir = runs / "-".join([path.stem, *(e.split("=")[-1] for e in extra)])
    _, *command = train_command(["model=v6", *extra, f"data.path={path}", f"data.cache_dir={cache}", *STEPS], run_dir)
    return [sys.executable, *command]


def measure_ddp(path: Path, cache: Path, runs: Path, tokenizer: str) -> dict:
    """A 2-rank trainer=ddp_cpu run; its ranks' memory at the moment their RSS summed peaked."""
    code, wall, _, out, memory = run_measured(corpus_train_command(path, cache, runs, "trainer=ddp_cpu", f"data.tokenizer={tokenizer}"))
    if code:
        print(out[-2000:], file=sys.stderr)
    return memory | {"ok": code == 0, "corpus": path.name, "wall": wall}


def megabytes(n: float | None) -> str:
    return "not measured" if n is None else f"{n:,.0f} MB"


def seconds(n: float | None) -> str:
    return "not measured" if n is None else f"{n:.2f} s"


def table(rows: list[dict], ddp: dict | None) -> list[str]:
    lines = [
        f"This machine has {os.cpu_count()} CPUs. Each figure is from a fresh process. *First prepare*: encoding into an empty cache. *Later start-up*: building",
        "the datamodule to its first batch, after the first prepare (imports not counted). *20-step run*:",
        f"`python train.py model=v6 data.path=<corpus> {' '.join(STEPS)}`: its peak RSS, and",
        "of the RSS at the sample (every 0.2 s) where it peaked, how much was the token file's mapped pages:",
        "page cache, shared with every other process that maps the file, and dropped first when memory runs short.", "",
        "| corpus | size | vocabulary | tokens (type) | first prepare | its peak RSS | later start-up "
        "| 20-step run: peak RSS | of it, the token file | its wall time | trained |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['corpus']} | {r['bytes'] / 1e6:,.1f} MB | {r['vocab']:,} | {r['tokens']:,} ({r['dtype']}) "
            f"| {seconds(r['prepare_s'])} | {megabytes(r['prepare_rss'])} | {seconds(r['startup_s'])} "
            f"| {megabytes(r['train_rss'])} | {megabytes(r['memory']['map_rss'] / 1024)} | {seconds(r['train_s'])} "
            f"| {'yes' if r['trained'] else '**no**'} |"
        )
    if ddp:
        lines += [
            "", f"A 2-process `trainer=ddp_cpu` run on {ddp['corpus']} ({seconds(ddp['wall'])}, finished: "
            f"{'yes' if ddp['ok'] else '**no**'}), its processes' memory when their RSS summed peaked:",
            f"RSS summed {ddp['rss'] / 1024:,.0f} MB, PSS summed (shared pages counted once) {ddp['pss'] / 1024:,.0f} MB.",
            f"The token file, mapped by {ddp['maps']} processes: RSS summed {ddp['map_rss'] / 1024:,.1f} MB, PSS summed",
            f"{ddp['map_pss'] / 1024:,.1f} MB: one copy of its pages in memory, shared by the ranks.",
        ]
    return lines


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=["100MB", "1GB"], help="generated corpora, e.g. 100MB 1GB")
    parser.add_argument("--source", type=Path, action="append", default=[], help="a corpus file of your own (repeatable)")
    parser.add_argument("--tokenizer", choices=["char", "byte"], default="char", help="data.tokenizer")
    parser.add_argument("--ddp", action="store_true", help="also a 2-process ddp_cpu run on the first corpus (of --sizes, else --source)")
    parser.add_argument("--dir", type=Path, default=PROJECT_ROOT / "runs" / "corpus_bench", help="corpora, cache, runs")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "corpora.md")
    return parser


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes]
    for source in args.source:
        if not source.is_file():
            raise UserError(f"--source {source} is not a file")
    corpora = [*(generate_corpus(args.dir / f"corpus_{s // 10**6}MB.txt", s) for s in sizes), *args.source]
    if not corpora:
        raise UserError("nothing to measure: give --sizes or --source")
    rows = []
    for corpus in corpora:
        rows.append(measure_corpus(corpus, args.dir / "cache" / corpus.stem, args.dir / "runs", args.tokenizer))
        print(rows[-1], flush=True)
    ddp = None
    if args.ddp:
        ddp = measure_ddp(corpora[0], args.dir / "cache" / corpora[0].stem, args.dir / "runs", args.tokenizer)
    command = tool_command("corpus_bench", sys.argv[1:] if argv is None else argv)
    print(write_page(args.out, "Corpora: prepare once, memory-map after", command, table(rows, ddp)))


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
