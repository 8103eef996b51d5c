"""The GPU code paths, run for real: trainer=gpu (bf16, TF32, torch.compile, fused AdamW and
attention), sampling on the GPU and from its checkpoint on the CPU, DDP inside a sweep, resume
and the divergence guard. Marked `gpu`: skipped on machines without CUDA (CI), run with
`pytest -m gpu` on one that has it."""

import json

import pytest
import torch

from shakegpt.bookkeeping.checkpoints import read_checkpoint
from shakegpt.bookkeeping.checkpoints import load_model
from tests.helpers import TINY, kill_train_after, run_script

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

# A tiny v7 on trainer=gpu: compile=auto compiles it there, precision is bf16-mixed.
TINY_V7 = ["model=v7", "model.n_embd=32", "model.n_head=4", "model.n_layer=2", "data.block_size=32", "data.batch_size=16"]


def test_a_compiled_bf16_run_samples_on_the_gpu_and_its_checkpoint_on_the_cpu(tmp_path):
    result = run_script("train.py", "trainer=gpu", *TINY_V7, f"hydra.run.dir={tmp_path}", *TINY)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accelerator"] == "cuda" and metrics["steps"] == 20
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    sampled = run_script("sample.py", f"ckpt={ckpt}", "device=cuda", "prompt=ROMEO:", "max_new_tokens=40")
    assert sampled.returncode == 0, sampled.stderr
    assert "ROMEO:" in sampled.stdout
    # Compiled weights are saved under their plain names and in float32: the CPU loads them as they are.
    state = read_checkpoint(ckpt)["state_dict"]
    assert not any("_orig_mod" in name for name in state)
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in state.values() if t.is_floating_point())
    model = load_model(ckpt)
    assert model.generate(torch.zeros(1, 1, dtype=torch.long), 10).shape == (1, 11)


def test_ddp_on_one_gpu_in_a_two_job_sweep(tmp_path):
    result = run_script(
        "train.py", "-m", "trainer=ddp", "trainer.devices=1", "compile=false", "model=v6", "seed=1,2",
        f"hydra.sweep.dir={tmp_path}", *TINY,
    )
    assert result.returncode == 0, result.stderr
    for job in ("0", "1"):
        metrics = json.loads((tmp_path / job / "metrics.json").read_text())
        assert (metrics["accelerator"], metrics["steps"]) == ("cuda", 20)


def test_a_gpu_run_killed_mid_way_resumes_to_its_end(tmp_path):
    overrides = ["trainer=gpu", "compile=false", *TINY_V7, "trainer.max_steps=400", "trainer.val_check_interval=100",
                 "checkpoint.every_n_steps=20", "checkpoint.every_minutes=null", "data.eval_iters=4"]
    last = tmp_path / "checkpoints" / "last.ckpt"
    interrupted_at = kill_train_after(overrides, tmp_path, 100)
    assert 100 <= interrupted_at < 400

    result = run_script("train.py", *overrides, f"hydra.run.dir={tmp_path}", "resume=auto")
    assert result.returncode == 0, result.stderr
    assert f"resuming from {last} at step {interrupted_at}" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["accelerator"], metrics["steps"]) == ("cuda", 400)


def test_the_divergence_guard_on_the_gpu(tmp_path):
    result = run_script("train.py", "trainer=gpu", "compile=false", "model=v6", "optimizer.lr=1e6",
                        f"hydra.run.dir={tmp_path}", *TINY)
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: the training loss became nan at step ") and "lower optimizer.lr" in last_line
