"""Bad input gets one clear line and a non-zero exit; runs resume exactly; checkpoints are safe."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

from shakegpt.bookkeeping.checkpoints import read_checkpoint
from shakegpt.training.checkpoint_io import AtomicCheckpointIO
from shakegpt.common.errors import UserError
from tests.helpers import ROOT, TINY, commands, kill_train_after, run_cli, run_script


def snapshot(root):
    """Every file and directory under root, by relative path, with a file's bytes (None for a
    directory): what a refused command must leave as it was."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.fixture
def corpora(tmp_path):
    files = {
        "empty": b"",
        "binary": b"\x00\x01\x02\x03binary",
        "latin1": "café au lait, ".encode("latin-1") * 20,
        "single": b"a" * 500,
        "small": b"to be or not to be, " * 10,
        "big": b"to be or not to be, " * 50_001,  # over a prompt file's 1,000,000 bytes
    }
    for name, content in files.items():
        (tmp_path / f"{name}.txt").write_bytes(content)
    os.mkfifo(tmp_path / "pipe.txt")  # a named pipe: reading it would wait for a writer forever
    (tmp_path / "folder.txt").mkdir()
    return tmp_path


SAMPLE_COST = "(a forward pass a token at every evaluation; sample.py writes longer texts)"
TRAIN_CASES = [
    (["model=v99"], 1, "Could not find 'model/v99'"),
    (["model=v6", "model.n_head=5"], 2, "error: model.n_embd=32 must be divisible by model.n_head=5"),
    (["model=v6", "model.n_embd=0"], 2, "error: model.n_embd must be a positive integer, got 0"),
    (["model=v6", "model.n_layer=-1"], 2, "error: model.n_layer must be a positive integer, got -1"),
    (["data.batch_size=0"], 2, "error: data.batch_size must be a positive integer, got 0"),
    (["trainer.max_steps=0"], 2, "error: trainer.max_steps must be a positive integer, got 0"),
    (["optimizer.lr=0"], 2, "error: optimizer.lr must be a positive number or 'auto', got 0"),
    (["model=v7", "model.dropout=1.5"], 2, "error: model.dropout must be in [0, 1), got 1.5"),
    (["model=v7", "model.dropout=abc"], 2, "error: model.dropout must be in [0, 1), got abc"),
    (["optimizer=muon", "optimizer.muon_lr=fast"], 2, "error: optimizer.muon_lr must be a positive number, got fast"),
    (["optimizer=muon", "optimizer.muon_weight_decay=-1"], 2,
     "error: optimizer.muon_weight_decay must be a number, 0 or more, got -1"),
    (["optimizer=muon", "optimizer.momentum=1"], 2, "error: optimizer.momentum must be in [0, 1), got 1"),
    (["optimizer.betas=0.9"], 2, "error: optimizer.betas must be two numbers in [0, 1), e.g. [0.9,0.99], got 0.9"),
    (["optimizer=adamw", "optimizer.weight_decay=x"], 2, "error: optimizer.weight_decay must be a number, 0 or more, got x"),
    (["data.path={corpora}/missing.txt"], 2, "error: cannot read corpus {corpora}/missing.txt: No such file or directory"),
    (["data.path={corpora}/empty.txt"], 2, "error: corpus {corpora}/empty.txt is empty"),
    (["data.path={corpora}/binary.txt"], 2, "looks binary (contains NUL bytes); data.tokenizer=byte reads any file"),
    (["data.path={corpora}/latin1.txt"], 2, "is not UTF-8 text (bad byte at offset 3)"),
    (["data.path={corpora}/single.txt"], 2, "the corpus has only 1 distinct character"),
    (["data.path={corpora}/small.txt", "data.block_size=64"], 2, "error: data.block_size=64 needs splits longer than that"),
    (["data.path=/dev/zero"], 2, "error: cannot read corpus /dev/zero: it is a character device, not a text file"),
    (["data.path={corpora}/pipe.txt"], 2, "error: cannot read corpus {corpora}/pipe.txt: it is a named pipe, not a text file"),
    (["data.path={corpora}/folder.txt"], 2, "error: cannot read corpus {corpora}/folder.txt: it is a directory, not a text file"),
    (["sample_tokens=-1"], 2, f"error: sample_tokens must be an integer from 0 to 10000 {SAMPLE_COST}, got -1"),
    (["sample_tokens=1e12"], 2, f"error: sample_tokens must be an integer from 0 to 10000 {SAMPLE_COST}, got 1000000000000.0"),
    (["sample_tokens=100000000"], 2, f"error: sample_tokens must be an integer from 0 to 10000 {SAMPLE_COST}, got 100000000"),
    (["seed=1e30"], 2, "error: seed must be an integer from 0 to 4294967295, got 1e+30"),
    (["seed=abc"], 2, "error: seed must be an integer from 0 to 4294967295, got abc"),
    (["seed=-1"], 2, "error: seed must be an integer from 0 to 4294967295, got -1"),
    (["seed=99999999999999999999"], 2, "error: seed must be an integer from 0 to 4294967295, got 99999999999999999999"),
    (["trainer.precision=foo"], 2, "error: Lightning refuses the trainer settings: Precision 'foo' is invalid."),
]


@pytest.mark.parametrize("overrides, code, message", TRAIN_CASES, ids=[" ".join(c[0]) for c in TRAIN_CASES])
def test_bad_training_input(tmp_path, corpora, trained_run, monkeypatch, overrides, code, message):
    runs = tmp_path / "runs"  # the new run's directory beside an earlier run, which must stay as it was
    shutil.copytree(trained_run, runs / "earlier")
    work = tmp_path / "work"  # the working directory, where Hydra would put outputs/
    work.mkdir()
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    args = [o.format(corpora=corpora) for o in overrides]
    exit_code, stderr, _ = run_cli("train.py", *TINY, *args, f"hydra.run.dir={runs / 'new' / 'run'}")
    assert exit_code == code
    assert message.format(corpora=corpora) in stderr
    if code == 2:
        assert stderr.strip().startswith("error: ") and len(stderr.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before  # no new directory, no lock file, the earlier run untouched


# Refused as Hydra starts (a config value), and after it made the run's directory (the model).
@pytest.mark.parametrize("refused", [["seed=abc"], ["model.n_head=5"]], ids=["value", "model"])
def test_a_refused_run_in_the_default_directories_leaves_nothing(tmp_path, trained_run, monkeypatch, refused):
    shutil.copytree(trained_run, tmp_path / "outputs" / time.strftime("%Y-%m-%d") / "00-00-00-v6")  # today's first run
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    assert run_cli("train.py", "model=v6", *TINY, *refused)[0] == 2
    assert snapshot(tmp_path) == before
    shutil.rmtree(tmp_path / "outputs")  # a first run: outputs/ made for it, and removed with it
    assert run_cli("train.py", "model=v6", *TINY, *refused)[0] == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("quote", ["", '"', "'"])  # Hydra's quoting, as DDP's child processes get it
def test_unwritable_output_directory(tmp_path, quote):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    exit_code, stderr, _ = run_cli("train.py", f"hydra.run.dir={quote}{blocker}/run{quote}", *TINY)
    assert exit_code == 2
    assert stderr.strip() == f"error: cannot write the output directory {blocker}/run: Not a directory"


def crafted_checkpoint(path, marker):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"shakegpt": {"model_class": "x"}, "payload": Payload()}, path)


@pytest.fixture
def bad_checkpoints(tmp_path, trained_run):
    good = (trained_run / "checkpoints" / "best.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint at all")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    crafted_checkpoint(tmp_path / "crafted.ckpt", tmp_path / "PWNED")
    return tmp_path


CHECKPOINT_CASES = [
    ("truncated.ckpt", "is corrupted or truncated"),
    ("garbage.ckpt", "is corrupted or not a checkpoint file"),
    ("foreign.ckpt", "is not a shakegpt checkpoint"),
    ("crafted.ckpt", "refused to load"),
    ("missing.ckpt", "does not exist"),
]


@pytest.mark.parametrize("name, message", CHECKPOINT_CASES)
def test_bad_checkpoint_for_sampling_and_resuming(bad_checkpoints, name, message):
    path = bad_checkpoints / name
    exit_code, stderr, _ = run_cli("sample.py", f"ckpt={path}")
    assert exit_code == 2 and stderr.startswith("error: ") and message in stderr
    run_dir = bad_checkpoints / f"resume-{name}"
    exit_code, stderr, _ = run_cli("train.py", f"ckpt_path={path}", f"hydra.run.dir={run_dir}", *TINY)
    assert exit_code == 2 and message in stderr
    assert not run_dir.exists()  # refused after Hydra made it: removed
    assert not (bad_checkpoints / "PWNED").exists()  # the crafted payload never ran


def test_crafted_checkpoint_is_refused_and_its_payload_never_runs(tmp_path):
    crafted_checkpoint(tmp_path / "crafted.ckpt", tmp_path / "PWNED")
    with pytest.raises(UserError, match=r"it would import (posix|os)\.system"):
        read_checkpoint(tmp_path / "crafted.ckpt")
    assert not (tmp_path / "PWNED").exists()


SAMPLE_CASES = [
    (["prompt='日'"], "error: characters not in the model's vocabulary: '日'"),
    (["temperature=0"], "error: temperature must be positive, got 0"),
    (["temperature=-1.5"], "error: temperature must be positive, got -1.5"),
    (["temperature=abc"], "error: temperature must be a positive number, got abc"),
    (["top_k=0"], "error: top_k must be an integer from 1 to the vocabulary size 65, got 0"),
    (["top_k=66"], "error: top_k must be an integer from 1 to the vocabulary size 65, got 66"),
    (["num_samples=0"], "error: num_samples must be a positive integer, got 0"),
    (["seed=1e30"], "error: seed must be an integer from 0 to 4294967295, got 1e+30"),
    (["seed=99999999999999999999"], "error: seed must be an integer from 0 to 4294967295, got 99999999999999999999"),
    (["prompt_file=/dev/zero"], "error: cannot read prompt file /dev/zero: it is a character device, not a text file"),
    (["prompt_file={corpora}/pipe.txt"], "error: cannot read prompt file {corpora}/pipe.txt: it is a named pipe, not a text file"),
    (["prompt_file={corpora}/folder.txt"], "error: cannot read prompt file {corpora}/folder.txt: it is a directory, not a text file"),
    (["prompt_file={corpora}/big.txt"], "error: prompt file {corpora}/big.txt is over the limit of 1,000,000 bytes"),
]


@pytest.mark.parametrize("overrides, message", SAMPLE_CASES, ids=[c[0][0] for c in SAMPLE_CASES])
def test_bad_sampling_input(trained_run, corpora, overrides, message):
    before = snapshot(trained_run)
    args = [o.format(corpora=corpora) for o in overrides]
    exit_code, stderr, stdout = run_cli("sample.py", f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", *args)
    assert exit_code == 2
    assert stderr.strip() == message.format(corpora=corpora) and stdout == ""
    assert snapshot(trained_run) == before


# The commands that read a checkpoint by name=value options: {ckpt} the trained run's best.ckpt.
TOOL_CASES = [
    ("shakegpt.evaluate", ["batch=²"], "error: batch must be a positive integer, got ²"),
    ("shakegpt.evaluate", ["corpus=/dev/zero"], "error: cannot read corpus /dev/zero: it is a character device, not a text file"),
    ("shakegpt.evaluate", ["corpus={corpora}/pipe.txt"],
     "error: cannot read corpus {corpora}/pipe.txt: it is a named pipe, not a text file"),
    ("shakegpt.evaluate", ["corpus={corpora}/folder.txt"],
     "error: cannot read corpus {corpora}/folder.txt: it is a directory, not a text file"),
    ("shakegpt.attention", ["out={corpora}/folder.txt"], "error: cannot write {corpora}/folder.txt: it is a directory, not a file"),
    ("shakegpt.attention", ["out={corpora}/x.foo"], "error: out={corpora}/x.foo: the name's ending gives the image format, one of "),
    ("shakegpt.attention", ["out=/dev/full"], "error: cannot write /dev/full: it is a character device, not a file"),
    ("shakegpt.attention", ["prompt_file={corpora}/pipe.txt"],
     "error: cannot read prompt file {corpora}/pipe.txt: it is a named pipe, not a text file"),
]


@pytest.mark.parametrize("command, args, message", TOOL_CASES, ids=[f"{c[0]} {c[1][0]}" for c in TOOL_CASES])
def test_bad_tool_input(trained_run, corpora, command, args, message):
    before, corpora_before = snapshot(trained_run), snapshot(corpora)
    args = [a.format(corpora=corpora) for a in args]
    exit_code, stderr, stdout = run_cli(command, f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", *args)
    assert exit_code == 2 and stdout == ""
    assert stderr.startswith(message.format(corpora=corpora)) and stderr.count("\n") == 1, stderr
    assert snapshot(trained_run) == before and snapshot(corpora) == corpora_before


def test_a_tiny_temperature_samples_greedily(trained_run):
    from shakegpt.bookkeeping.checkpoints import load_model

    model = load_model(trained_run / "checkpoints" / "best.ckpt")
    start = torch.zeros((1, 1), dtype=torch.long)
    greedy = model.generate(start, 30, top_k=1)
    for temperature in (1e-45, 1e-300):  # below float32's smallest number, too
        assert torch.equal(model.generate(start, 30, temperature=temperature), greedy)


@pytest.mark.slow
def test_full_traceback_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    result = run_script("train.py", "model=v6", "model.n_head=5", f"hydra.run.dir={tmp_path}", *TINY)
    assert result.returncode == 1 and "Traceback" in result.stderr and "UserError" in result.stderr


@pytest.mark.slow
def test_divergence_guard_on_the_loss(tmp_path):
    result = run_script("train.py", "model=v6", "optimizer.lr=1e6", f"hydra.run.dir={tmp_path}", *TINY)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the training loss became nan at step 2 with learning rate 1e+06; lower optimizer.lr "
        "(lr_find=true runs the range test); checkpoints from before it are kept"
    )


@pytest.mark.slow
def test_divergence_guard_keeps_the_last_good_checkpoint(tmp_path):
    result = run_script(
        "train.py", "model=v2", "optimizer.lr=1e3", "trainer.max_steps=50", "checkpoint.every_n_steps=1",
        "checkpoint.every_minutes=null", f"hydra.run.dir={tmp_path}", *TINY[1:],
    )
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    # Step 7's update overflows the weights (caught as the checkpoint is saved, before writing);
    # the loss would show NaN only at step 8.
    assert last_line.startswith("error: the weights became non-finite at step 7 with learning rate 1e+03")
    assert "lr_find=true" in last_line
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 6
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "failed"


# A tiny v7 (with dropout, so the restored RNG matters), checkpointed every 20 steps.
RESUMABLE = [
    "model=v7", "model.n_embd=32", "model.n_head=4", "model.n_layer=2", "data.block_size=16", "data.batch_size=16",
    "trainer.max_steps=400", "trainer.val_check_interval=50", "checkpoint.every_n_steps=20",
    "checkpoint.every_minutes=null", "data.eval_iters=4", "trainer.log_every_n_steps=10", "sample_tokens=10",
]


def val_curve(run_dir):
    from shakegpt.bookkeeping.runs import load_run

    return {step: value for step, value, _ in load_run(run_dir).scalars["val/loss"]}


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_script("train.py", *RESUMABLE, f"hydra.run.dir={whole}").returncode == 0

    last = killed / "checkpoints" / "last.ckpt"
    interrupted_at = kill_train_after(RESUMABLE, killed, 100)
    assert 100 <= interrupted_at < 400

    result = run_script("train.py", *RESUMABLE, f"hydra.run.dir={killed}", "resume=auto")
    assert result.returncode == 0, result.stderr
    assert f"resuming from {last} at step {interrupted_at}" in result.stdout
    expected, got = (json.loads((d / "metrics.json").read_text()) for d in (whole, killed))
    for key in ("final_train_loss", "final_val_loss", "best_val_loss", "steps"):
        assert got[key] == expected[key], key
    curve = val_curve(killed)  # TensorBoard continues the same run's curve
    assert curve == val_curve(whole)


@pytest.mark.slow
def test_a_kill_during_an_evaluation_resumes_to_that_evaluation(tmp_path):
    # Checkpoints every 25 steps, then the run's one evaluation (about 4 s here) at step 50: the kill,
    # a second after step 25's file, lands in that evaluation. The resumed run must evaluate again.
    long_eval = [o for o in RESUMABLE if not o.startswith(("data.eval_iters", "checkpoint.every", "trainer.max_steps"))]
    long_eval += ["data.eval_iters=2000", "checkpoint.every_n_steps=25", "checkpoint.every_minutes=null",
                  "trainer.max_steps=50"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_script("train.py", *long_eval, f"hydra.run.dir={whole}").returncode == 0

    last = killed / "checkpoints" / "last.ckpt"
    command = [sys.executable, str(ROOT / "train.py"), *long_eval, f"hydra.run.dir={killed}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and not last.exists():
        time.sleep(0.02)
    time.sleep(1.0)
    process.kill()
    process.wait()
    assert not (killed / "checkpoints" / "best.ckpt").exists()  # step 50's evaluation had not finished

    result = run_script("train.py", *long_eval, f"hydra.run.dir={killed}", "resume=auto")
    assert result.returncode == 0, result.stderr
    assert val_curve(killed) == val_curve(whole) and list(val_curve(whole)) == [49]
    assert json.loads((killed / "metrics.json").read_text())["best_val_loss"] == json.loads(
        (whole / "metrics.json").read_text())["best_val_loss"]


def test_resume_auto_finds_the_newest_unfinished_run_of_the_same_command(tmp_path):
    from shakegpt.bookkeeping.resume import find_unfinished_run

    def make_run(name, overrides, state, with_checkpoint=True):
        run = tmp_path / "outputs" / "2026-01-01" / name
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        (run / "status.json").write_text(json.dumps({"state": state}))
        if with_checkpoint:
            (run / "checkpoints").mkdir()
            (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
        return run

    make_run("a", ["model=v6"], "running")
    time.sleep(0.01)
    newest = make_run("b", ["model=v6", "resume=auto"], "failed")
    make_run("c", ["model=v6"], "finished")
    make_run("d", ["model=v5"], "running")
    make_run("e", ["model=v6"], "running", with_checkpoint=False)
    assert find_unfinished_run(["model=v6", "resume=auto"], tmp_path / "outputs", "*/*") == newest
    assert find_unfinished_run(["model=v4"], tmp_path / "outputs", "*/*") is None


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, trained_run, monkeypatch):
    target = tmp_path / "last.ckpt"
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", target)
    before = read_checkpoint(target)

    def dies_halfway(fd):
        raise KeyboardInterrupt  # the process is gone mid-write, before the rename

    monkeypatch.setattr(os, "fsync", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"anything": 1}, target)
    after = read_checkpoint(target)
    assert after["global_step"] == before["global_step"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # the temporary file is removed too


@pytest.mark.slow
def test_same_config_and_seed_give_identical_losses(trained_run, tmp_path):
    assert run_script("train.py", "model=v6", f"hydra.run.dir={tmp_path}", *TINY).returncode == 0
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (trained_run, tmp_path))
    for key in ("final_train_loss", "final_val_loss", "best_val_loss"):
        assert first[key] == second[key]
    assert val_curve(trained_run) == val_curve(tmp_path)


def test_an_apple_gpu_s_random_state_is_saved_and_restored(monkeypatch):
    """Dropout on MPS draws from the MPS generator: a resume must continue it as it does the
    CPU's and CUDA's (faked here: this machine has no Apple GPU)."""
    from shakegpt.models.v7 import V7
    from shakegpt.training.module import trainable

    state = {"mps": torch.tensor([1, 2, 3], dtype=torch.uint8)}
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: state["mps"].clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda new: state.update(mps=new))
    model = trainable(V7)(vocab="abc", block_size=4, n_embd=8, n_head=2, n_layer=1, dropout=0.1)
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    assert torch.equal(checkpoint["rng"]["mps"], torch.tensor([1, 2, 3], dtype=torch.uint8))
    state["mps"] = torch.tensor([9], dtype=torch.uint8)  # the generator moved on
    model.on_load_checkpoint(checkpoint)
    assert torch.equal(state["mps"], torch.tensor([1, 2, 3], dtype=torch.uint8))


def test_a_closed_output_pipe_ends_a_command_quietly(monkeypatch):
    """`python -m shakegpt.tools.model_diff v7 | head -1`: exit 141 without a traceback."""
    from shakegpt.common import errors

    monkeypatch.setattr(errors, "quiet_stdout", lambda: None)  # the real one points fd 1 at /dev/null

    @errors.report_user_errors
    def main():
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 141


# A user error each command meets as it reads its command line. The others read theirs with
# argparse: their parser is made to raise one, standing for any their work raises.
USER_ERRORS = {
    "train.py": (["model=v6", "data.batch_size=0"], "error: data.batch_size must be a positive integer, got 0"),
    "sample.py": (["ckpt=/no/such.ckpt", "devcie=cpu"], "error: unknown option devcie; the options are "),
    "shakegpt.evaluate": (["ckpt=/no/such.ckpt", "split=dev"], "error: split must be one of train, val, test, got dev"),
    "shakegpt.attention": (["ckpt=/no/such.ckpt", "prompt="], "error: the prompt is empty: give prompt=<text> or prompt_file=<path>"),
}


@pytest.mark.parametrize("command", commands())
def test_every_command_reports_user_errors_in_one_line(command, monkeypatch, tmp_path):
    """`python <script>` or `python -m <module>` as typed: one line on stderr, exit code 2."""
    import argparse

    args, message = USER_ERRORS.get(command, ([], "error: a user error, raised as the arguments are read"))

    def parse_args(*_, **__):
        raise UserError(message.removeprefix("error: "))

    if command not in USER_ERRORS:  # (Hydra reads train.py's and sample.py's with argparse too)
        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    monkeypatch.chdir(tmp_path)  # anything a command would write lands here (train.py's outputs/)
    code, stderr, stdout = run_cli(command, *args)
    assert code == 2
    assert stderr.startswith(message) and stderr.count("\n") == 1, stderr
    assert stdout == ""


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("override", ["trainer=gpu", "trainer=ddp", "trainer.accelerator=cuda"])
def test_a_gpu_trainer_without_a_gpu_is_one_line(override, tmp_path):
    code, stderr, _ = run_cli("train.py", "model=v6", override, f"hydra.run.dir={tmp_path}")
    assert code == 2
    accelerator = "cuda" if "cuda" in override else "gpu"
    assert stderr.strip().splitlines() == [
        f"error: trainer.accelerator={accelerator} needs a GPU and this machine has none; "
        "use trainer=cpu, or trainer.accelerator=auto to take one where there is one"
    ]
    assert list(tmp_path.iterdir()) == []  # the directory it was aimed at, as it was: no .hydra/, log or lock file


# A run directory's own records, damaged: cut short, unparsable, or of the wrong shape.
DAMAGED = [
    ("status.json", "[1, 2]"), ("status.json", '{"state": "runn'),
    (".hydra/overrides.yaml", "{a: 1}"), (".hydra/overrides.yaml", "[unclosed"), (".hydra/overrides.yaml", "- 1\n- [2]\n"),
    (".hydra/config.yaml", "- a list\n"), (".hydra/config.yaml", "{unclosed"),
]


@pytest.fixture(params=DAMAGED, ids=[f"{name}={content!r}" for name, content in DAMAGED])
def damaged_run(request, tmp_path, trained_run):
    """outputs/<day>/<run>: a copy of the trained run, one of its records damaged."""
    name, content = request.param
    run = tmp_path / "outputs" / "2026-01-01" / "00-00-00-v6"
    shutil.copytree(trained_run, run)
    (run / name).write_text(content)
    return run


def assert_warned_or_refused(stderr):
    """Nothing, a warning line, or a one-line error: never a traceback."""
    lines = stderr.strip().splitlines()
    assert all(line.startswith(("warning: ", "error: ")) for line in lines) and len(lines) <= 1, stderr


def test_report_reads_a_damaged_run_or_sweep_in_one_line(damaged_run, trained_run, tmp_path):
    before = snapshot(damaged_run)
    code, stderr, _ = run_cli("report.py", str(damaged_run))
    assert (code, stderr.startswith("error: ")) in [(0, False), (2, True)]
    assert_warned_or_refused(stderr)
    assert snapshot(damaged_run) == before
    sweep = tmp_path / "multirun" / "2026-01-01" / "00-00-00"  # a sound job 0 and the damaged job 1
    shutil.copytree(trained_run, sweep / "0")
    shutil.copytree(damaged_run, sweep / "1")
    code, stderr, stdout = run_cli("report.py", str(sweep))
    assert code == 0 and "| 0 |" in stdout
    assert_warned_or_refused(stderr)


def test_resume_auto_passes_over_a_damaged_run(damaged_run, monkeypatch, capsys):
    from shakegpt.bookkeeping.resume import with_resume_dir

    monkeypatch.chdir(damaged_run.parents[2])
    before = snapshot(damaged_run)
    argv = with_resume_dir(["train.py", "model=v6", "resume=auto"])
    assert_warned_or_refused(capsys.readouterr().err)
    assert argv[:3] == ["train.py", "model=v6", "resume=auto"]
    assert snapshot(damaged_run) == before
