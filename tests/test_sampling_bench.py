"""The sampling benchmark's quick version: one small model, seconds."""

import torch

from shakegpt.tools import sampling_bench


def test_quick_sampling_bench_writes_its_page(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "sampling.md"
    try:
        sampling_bench.main(["--quick", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)  # the tool sets them for its rows
    text = out.read_text()
    assert text.startswith(f"# Sampling speed\n\nWritten by `python -m shakegpt.tools.sampling_bench --quick --out {out}` on ")
    assert "- v6: " in text and "MFLOPs per character" in text
    rows = [line for line in text.splitlines() if line.startswith("| v6 |")]
    assert [row.split(" | ")[1:4] for row in rows] == [["short", "20", "1"], ["block", "20", "1"]]
