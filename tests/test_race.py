"""gpu_race's table from real (tiny, CPU) runs, and its refusal without a GPU."""

import pytest
import torch

from shakegpt.evaluate import score_checkpoint
from shakegpt.tools import gpu_race
from tests.helpers import TINY

SMALL = ["model.n_embd=16", "model.n_head=2", "model.n_layer=1", "data.batch_size=4", "data.block_size=16"]


@pytest.mark.slow
def test_gpu_race_table_from_runs_on_any_trainer(tmp_path):
    out = tmp_path / "gpu_race.md"
    gpu_race.main(["--trainer", "cpu", "--runs", str(tmp_path / "runs"), "--out", str(out), *TINY, *SMALL])
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| v7 |", "| nanogpt_gpu |"))]
    assert len(rows) == 2
    # 20 tiny steps stay far above both targets: the table says so rather than inventing a time.
    assert all("| not reached |" in row for row in rows)
    assert "v7's row took" in text and "nanogpt_gpu: `python train.py experiment=nanogpt_gpu trainer=cpu" in text
    for name, row in zip(("v7", "nanogpt_gpu"), rows):
        assert (tmp_path / "runs" / name / "metrics.json").is_file()
        # The whole-split column is the evaluator's figure for best.ckpt; no GPU, no peak, no MFU.
        loss, _, _ = score_checkpoint(tmp_path / "runs" / name / "checkpoints" / "best.ckpt")
        assert f"| {loss:.4f} |" in row and "| not measured |" in row


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_race_without_a_gpu_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu_race.main(["--runs", str(tmp_path), "--out", str(tmp_path / "gpu_race.md")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --trainer gpu needs a CUDA GPU and this machine has none"
    assert not (tmp_path / "gpu_race.md").exists()
