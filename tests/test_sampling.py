import io

import pytest
import torch

from shakegpt.errors import UserError
from shakegpt.sampling import load_model, write_samples
from tests.conftest import run_cli


def test_sample_script_streams_from_the_checkpoint(trained_run):
    args = [f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", "prompt=ROMEO:", "max_new_tokens=50", "top_k=40",
            "temperature=0.8", "seed=7"]
    code, stderr, stdout = run_cli("sample.py", *args)
    assert code == 0, stderr
    assert stdout.startswith("ROMEO:") and len(stdout) == len("ROMEO:") + 50 + 1
    assert run_cli("sample.py", *args)[2] == stdout  # the seed fixes the sample
    assert run_cli("sample.py", *args[:-1], "seed=8")[2] != stdout


def test_sample_defaults_to_the_newest_best_checkpoint(trained_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "outputs" / "2026-01-01" / "00-00-00-v6"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "best.ckpt").write_bytes((trained_run / "checkpoints" / "best.ckpt").read_bytes())
    monkeypatch.chdir(tmp_path)
    code, stderr, stdout = run_cli("sample.py", "max_new_tokens=20")
    assert code == 0, stderr
    assert len(stdout) == 21


def test_checkpoint_alone_rebuilds_the_model(trained_run):
    model = load_model(trained_run / "checkpoints" / "best.ckpt")
    assert len(model.vocab) == 65 and sum(p.numel() for p in model.parameters()) == 42_369
    out = io.StringIO()
    write_samples(model, "", 30, num_samples=2, out=out)
    assert out.getvalue().count("-" * 40) == 1


def test_prompt_outside_the_vocabulary_is_named(trained_run):
    code, stderr, _ = run_cli("sample.py", f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", "prompt='日本'")
    assert code == 2
    assert stderr.strip() == "error: characters not in the model's vocabulary: '日', '本'"


@pytest.mark.parametrize(
    "kwargs, message",
    [({"temperature": 0.0}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_k": 66}, "top_k"), ({"num_samples": 0}, "num_samples")],
)
def test_bad_sampling_settings(trained_run, kwargs, message):
    model = load_model(trained_run / "checkpoints" / "best.ckpt")
    with pytest.raises(UserError, match=message):
        write_samples(model, "a", 5, **kwargs)


def test_a_file_that_is_not_a_shakegpt_checkpoint(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(UserError, match="not a shakegpt checkpoint"):
        load_model(path)
