"""DDP on CPU (gloo): single runs, inside sweeps, across two 'nodes' on loopback; compiled
checkpoints."""

import csv
import json
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from shakegpt.data import CorpusDataModule
from shakegpt.bookkeeping.checkpoints import load_model
from tests.helpers import ROOT, TINY, run_script


@pytest.fixture(scope="module")
def ddp_cpu_run(tmp_path_factory):
    """trainer=ddp_cpu: two processes on one node; (run directory, the finished process)."""
    run_dir = tmp_path_factory.mktemp("ddp_cpu")
    result = run_script("train.py", "trainer=ddp_cpu", "model=v6", f"hydra.run.dir={run_dir}", *TINY)
    assert result.returncode == 0, result.stderr
    return run_dir, result


@pytest.mark.slow
def test_ddp_cpu_trains_with_one_checkpoint_and_log_directory(ddp_cpu_run):
    tmp_path, result = ddp_cpu_run
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert {p.parent for p in tmp_path.rglob("events.out.tfevents.*")} == {tmp_path}  # rank 0's only
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["effective_batch"] == 2 * 32 and metrics["device"].endswith("x2 processes")
    assert "effective batch: 2 processes (1 nodes) x 32 = 64 sequences" in result.stdout
    assert (tmp_path / "train_ddp_process_1.log").exists()  # rank 1 ran in this directory


def test_ranks_draw_different_batches():
    data = CorpusDataModule(batch_size=4, block_size=8)
    first_batch = {}
    for rank in (0, 1):
        data.trainer = SimpleNamespace(global_rank=rank, global_step=0, accumulate_grad_batches=1)
        first_batch[rank] = next(iter(data.train_dataloader()))[0]
    assert not torch.equal(first_batch[0], first_batch[1])


@pytest.mark.slow
def test_ddp_jobs_inside_a_multirun(tmp_path):
    result = run_script(
        "train.py", "-m", "trainer=ddp_cpu", "model=v6", "data.block_size=4,8", f"hydra.sweep.dir={tmp_path}", *TINY
    )
    assert result.returncode == 0, result.stderr
    jobs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]  # no nested sweep from the rank-1 processes
    rows = {row["job"]: row for row in csv.DictReader((tmp_path / "summary.csv").open())}
    for job in jobs:
        metrics = json.loads((tmp_path / job / "metrics.json").read_text())
        assert metrics["effective_batch"] == 64
        assert (tmp_path / job / "train_ddp_process_1.log").exists()
        # The summary counts both processes' tokens, and its tokens/s is metrics.json's.
        assert int(rows[job]["tokens"]) == metrics["tokens"] == 20 * 64 * int(rows[job]["overrides"][-1])
        assert float(rows[job]["tokens_per_s"]) == metrics["tokens_per_s"]
    assert "| finished |" in (tmp_path / "summary.md").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_loopback_with_torchrun(tmp_path):
    port = free_port()
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}", "--nproc_per_node=1",
             "--master_addr=127.0.0.1", f"--master_port={port}", str(ROOT / "train.py"), "trainer=ddp_cpu",
             "trainer.devices=1", "trainer.num_nodes=2", "model=v6", f"hydra.run.dir={tmp_path}", *TINY],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["effective_batch"] == 64 and metrics["steps"] == 20
    assert (tmp_path / "train_rank1.log").exists()


def srun_task_env(rank: int, port: int) -> dict:
    """The environment srun gives task `rank` of a 2-node job with one task per node, as
    Lightning's SLURMEnvironment reads it (the address from SLURM_NODELIST's first node)."""
    return {
        **os.environ, "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train", "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2", "SLURM_NODELIST": "127.0.0.1",
        "SLURM_JOB_NODELIST": "127.0.0.1", "SLURM_PROCID": str(rank), "SLURM_LOCALID": "0",
        "SLURM_NODEID": str(rank), "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
    }


@pytest.mark.slow
def test_two_slurm_tasks_train_the_run_ddp_cpu_trains_on_one_node(tmp_path, ddp_cpu_run):
    # Both train the same global batches (each rank draws its own by global rank) from the same
    # weights. gloo's allreduce may add the ranks' gradients in another order over a network than
    # within one node, so the figures are held to float32 rounding, 1e-5 (here at 20 steps they
    # are equal to the bit; the 300-step runs ended 1e-4 apart, val 2.4621 and 2.4620).
    port = free_port()
    tasks = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), "trainer=ddp_cpu", "trainer.num_nodes=2", "trainer.devices=1",
             "model=v6", f"hydra.run.dir={tmp_path}", *TINY],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=srun_task_env(rank, port),
        )
        for rank in (0, 1)
    ]
    try:
        outputs = [task.communicate(timeout=240)[0] for task in tasks]
    finally:  # a task left waiting for the other (which failed) would outlive the test
        for task in tasks:
            task.kill()
    assert [task.returncode for task in tasks] == [0, 0], outputs
    assert "effective batch: 2 processes (2 nodes) x 32 = 64 sequences" in outputs[0]
    two_nodes, one_node = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path, ddp_cpu_run[0]))
    assert two_nodes["effective_batch"] == one_node["effective_batch"] == 64 and two_nodes["steps"] == 20
    for key in ("final_train_loss", "final_val_loss", "best_val_loss"):
        assert two_nodes[key] == pytest.approx(one_node[key], abs=1e-5), key
    assert (tmp_path / "train_rank1.log").exists()  # the second task ran in the same run directory


@pytest.mark.slow
def test_compiled_model_checkpoint_loads_into_an_uncompiled_model(tmp_path):
    result = run_script("train.py", "model=v6", "compile=true", f"hydra.run.dir={tmp_path}", *TINY)
    assert result.returncode == 0, result.stderr
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any("_orig_mod" in key for key in checkpoint["state_dict"])
    model = load_model(tmp_path / "checkpoints" / "last.ckpt")  # a plain, uncompiled module
    assert model(torch.zeros((1, 8), dtype=torch.long)).shape == (1, 8, 65)
