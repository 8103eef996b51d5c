"""The beyond tool's table from real (tiny) runs: whole-split losses, deltas, commands."""

import statistics

import pytest

from shakegpt.evaluate import score_checkpoint
from shakegpt.tools import beyond

QUICK = ["trainer.max_steps=20", "trainer.val_check_interval=10", "data.eval_iters=2", "model.n_layer=1"]


@pytest.mark.slow
def test_the_table_scores_each_run_on_the_whole_split_and_compares_each_row_with_the_one_before(tmp_path):
    out = tmp_path / "beyond.md"
    beyond.main(["--rows", "v12", "v12+muon", "--seeds", "1", "2", "--jobs", "2", "--runs", str(tmp_path / "runs"),
                 "--out", str(out), *QUICK])
    text = out.read_text()
    losses = {
        row: [score_checkpoint(tmp_path / "runs" / row / f"seed{s}" / "checkpoints" / "best.ckpt")[0] for s in (1, 2)]
        for row in ("v12", "v12+muon")
    }
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith(("| v12 |", "| v12+muon |"))}
    assert set(rows) == {"v12", "v12+muon"}
    for row, values in losses.items():
        assert f"| {statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} |" in rows[row]
        assert ", ".join(f"{v:.4f}" for v in values) in rows[row]
    delta = statistics.mean(losses["v12+muon"]) - statistics.mean(losses["v12"])
    assert f"| {delta:+.4f} vs v12 |" in rows["v12+muon"] and "| n/a |" in rows["v12"]
    assert "optimizer=muon" in text and (tmp_path / "beyond.png").stat().st_size > 0


def test_a_run_that_fails_stops_the_tool_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        beyond.main(["--rows", "v7", "--seeds", "1", "--jobs", "1", "--runs", str(tmp_path), "--out", str(tmp_path / "b.md"),
                     "model.n_head=5"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: a run stopped with exit code 2 (its error is above): python train.py model=v7")
    assert not (tmp_path / "b.md").exists()
