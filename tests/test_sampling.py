import io

import pytest
import torch

from shakegpt.errors import UserError
from shakegpt.sampling import load_model, write_samples
from tests.conftest import run_script


def test_sample_script_streams_from_the_checkpoint(trained_run):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    result = run_script("sample.py", f"ckpt={ckpt}", "prompt=ROMEO:", "max_new_tokens=50", "top_k=40", "temperature=0.8", "seed=7")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:")
    assert len(result.stdout) >= len("ROMEO:") + 50
    again = run_script("sample.py", f"ckpt={ckpt}", "prompt=ROMEO:", "max_new_tokens=50", "top_k=40", "temperature=0.8", "seed=7")
    assert again.stdout == result.stdout  # the seed fixes the sample


def test_checkpoint_alone_rebuilds_the_model(trained_run):
    model = load_model(trained_run / "checkpoints" / "best.ckpt")
    assert len(model.vocab) == 65 and sum(p.numel() for p in model.parameters()) == 42_369
    out = io.StringIO()
    write_samples(model, "", 30, num_samples=2, out=out)
    assert out.getvalue().count("-" * 40) == 1


def test_prompt_outside_the_vocabulary_is_named(trained_run):
    result = run_script("sample.py", f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", "prompt='日本'")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: characters not in the model's vocabulary: '日', '本'"


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
