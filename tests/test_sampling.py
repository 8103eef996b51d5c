import io
import os
import shlex
import subprocess
import sys

import pytest
import torch

from shakegpt.common.errors import UserError
from shakegpt.bookkeeping.checkpoints import load_model
from shakegpt.sampling.generate import pick_device, write_samples
from tests.helpers import ROOT, run_cli, run_script


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
    assert len(model.tokenizer) == 65 and sum(p.numel() for p in model.parameters()) == 42_369
    out = io.StringIO()
    write_samples(model, "", 30, num_samples=2, out=out)
    assert out.getvalue().count("-" * 40) == 1


# Every module of shakegpt.models, a checkpoint loaded and sampled from, in a fresh process.
LOAD_AND_SAMPLE = """
import io, pkgutil, sys
import shakegpt.models
for module in pkgutil.walk_packages(shakegpt.models.__path__, "shakegpt.models."):
    __import__(module.name)
from shakegpt.bookkeeping.checkpoints import load_model
from shakegpt.sampling.generate import write_samples
write_samples(load_model(sys.argv[1]), "ROMEO:", 5, out=io.StringIO())
print("\\n".join(sorted(sys.modules)))
"""


def test_models_and_sampling_import_no_training_code():
    """A model is a model: a plain torch module, whose training steps, optimizer and schedule
    live on the training side; the training loop, Lightning and Hydra stay out of loading and
    sampling. (torch.optim's private Muon
    module cannot be checked here: `import torch` itself loads it for torch.optim.Muon.)"""
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SAMPLE, str(ROOT / "tests" / "data" / "v2_fb81f8b.ckpt")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "shakegpt.models.v12" in loaded and "shakegpt.sampling.generate" in loaded
    assert [name for name in loaded if name.startswith(("shakegpt.training", "hydra", "lightning"))] == []


# sample.py as typed, then the packages it loaded that sampling does not need (torch's compiler
# costs a second: initialising the weights of the meta skeleton a checkpoint is checked against
# would load it).
SAMPLE_PY = """
import atexit, runpy, sys
unneeded = ("lightning", "optuna", "shakegpt.training", "shakegpt.data.module", "hydra_plugins.shakegpt_optuna._pruning",
            "torch._dynamo")
atexit.register(lambda: print("loaded:", sorted(m for m in sys.modules if m.startswith(unneeded))))
sys.argv = ["sample.py", *sys.argv[1:]]
runpy.run_path("sample.py", run_name="__main__")
"""


def test_sample_py_loads_no_training_machinery():
    """The whole command, Hydra's plugin scan included (it imports every public module of
    src/hydra_plugins)."""
    ckpt = ROOT / "tests" / "data" / "v2_fb81f8b.ckpt"
    result = subprocess.run([sys.executable, "-c", SAMPLE_PY, f"ckpt={ckpt}", "max_new_tokens=5"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "loaded: []"


def test_a_file_that_is_not_a_shakegpt_checkpoint(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(UserError, match="not a shakegpt checkpoint"):
        load_model(path)


# Every class of character a user may type in a prompt (several classes to a prompt, one
# process each), and what the model must receive.
TYPED_PROMPTS = {
    "commas, punctuation, a colon inside, equals": (
        "To be, or not to be: !?;.'\"()[]{} a=b == c", "To be, or not to be: !?;.'\"()[]{} a=b == c"),
    "spaces at both ends, non-ASCII": ("  € café 日本  ", "  € café 日本  "),
    "escapes": (r"line one\nline two, back\\slash \q", "line one\nline two, back\\slash \\q"),
    "Hydra's own syntax": ("${oc.env:HOME} [1,2] range(1,3)", "${oc.env:HOME} [1,2] range(1,3)"),
}


@pytest.fixture(scope="module")
def any_text_checkpoint(tmp_path_factory):
    """A bigram trained a few steps on a corpus holding every character the prompts use."""
    run_dir = tmp_path_factory.mktemp("any_text")
    corpus = run_dir / "corpus.txt"
    corpus.write_text(("".join(chr(c) for c in range(32, 127)) + "\n€éü日本語\t") * 40, encoding="utf-8")
    result = run_script(
        "train.py", "model=bigram", f"data.path={corpus}", "data.block_size=4", "trainer.max_steps=2",
        "trainer.val_check_interval=2", "trainer.log_every_n_steps=1", "data.eval_iters=1", "sample_tokens=2",
        f"hydra.run.dir={run_dir / 'run'}",
    )
    assert result.returncode == 0, result.stderr
    return run_dir / "run" / "checkpoints" / "best.ckpt"


@pytest.mark.slow
def test_prompts_reach_the_model_as_typed_in_a_shell(any_text_checkpoint):
    # Typed into bash exactly as a user would quote them; all at once, each a real process.
    processes = {
        name: subprocess.Popen(
            f"{shlex.quote(sys.executable)} sample.py ckpt={any_text_checkpoint} {shlex.quote('prompt=' + typed)} max_new_tokens=0",
            shell=True, executable="/bin/bash", cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for name, (typed, _) in TYPED_PROMPTS.items()
    }
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, (name, stderr.decode())
        assert stdout.decode("utf-8") == TYPED_PROMPTS[name][1] + "\n", name


@pytest.mark.slow
def test_unquoted_prompt_words_are_joined_and_options_after_it_still_apply(any_text_checkpoint):
    result = run_script("sample.py", f"ckpt={any_text_checkpoint}", "prompt=To", "be,", "or", "not", "max_new_tokens=3", "seed=5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("To be, or not") and len(result.stdout) == len("To be, or not") + 3 + 1


def test_prompt_file(any_text_checkpoint, tmp_path):
    text = "First line, with (brackets) and €\nsecond line \\n stays as written\n"
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text(text, encoding="utf-8")
    code, stderr, stdout = run_cli("sample.py", f"ckpt={any_text_checkpoint}", f"prompt_file={prompt_file}", "max_new_tokens=0")
    assert code == 0, stderr
    assert stdout == text + "\n"


def sample_config_with(tmp_path, **values):
    """A copy of conf/sample.yaml with these keys set, for --config-path."""
    from omegaconf import OmegaConf

    config = OmegaConf.load(ROOT / "conf" / "sample.yaml")
    config.merge_with(values)
    OmegaConf.save(config, tmp_path / "sample.yaml")
    return f"--config-path={tmp_path}"


def test_the_configs_prompt_is_used_unless_the_command_line_gives_one(any_text_checkpoint, tmp_path):
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("from the file", encoding="utf-8")
    configured = sample_config_with(tmp_path, prompt="ROMEO:\\n")  # escapes as typed: ROMEO: and a newline
    base = ["--config-name=sample", f"ckpt={any_text_checkpoint}", "max_new_tokens=0"]
    assert run_cli("sample.py", configured, *base)[2] == "ROMEO:\n\n"
    assert run_cli("sample.py", configured, *base, "prompt=JULIET:")[2] == "JULIET:\n"
    assert run_cli("sample.py", configured, *base, f"prompt_file={prompt_file}")[2] == "from the file\n"
    from_file = sample_config_with(tmp_path, prompt_file=str(prompt_file))
    assert run_cli("sample.py", from_file, *base)[2] == "from the file\n"


@pytest.mark.parametrize(
    "content, message",
    [(None, "error: cannot read prompt file {path}: No such file or directory"),
     (b"caf\xe9", "error: prompt file {path} is not UTF-8 text (bad byte at offset 3)")],
    ids=["missing", "latin-1"],
)
def test_bad_prompt_file_is_one_line(any_text_checkpoint, tmp_path, content, message):
    path = tmp_path / "prompt.txt"
    if content is not None:
        path.write_bytes(content)
    code, stderr, _ = run_cli("sample.py", f"ckpt={any_text_checkpoint}", f"prompt_file={path}")
    assert code == 2
    assert stderr.strip() == message.format(path=path)


@pytest.mark.slow
def test_unknown_characters_are_named_whatever_else_the_prompt_holds(trained_run):
    result = run_script("sample.py", f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", "prompt=To be, or (not) to be: 日")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: characters not in the model's vocabulary: '(', ')', '日'"


@pytest.mark.slow
def test_help_lists_the_sampling_options_not_the_training_groups():
    result = run_script("sample.py", "--help")
    assert result.returncode == 0
    for option in ("prompt=", "prompt_file=", "max_new_tokens=", "num_samples=", "device=", "\\n for a newline",
                   "kv_cache=false",
                   "threads=N", "under 100,000 parameters"):
        assert option in result.stdout, option
    assert "model: " not in result.stdout and "Configuration groups" not in result.stdout


def test_samples_are_drawn_as_one_batch_and_repeat_with_the_seed(trained_run, monkeypatch):
    model = load_model(trained_run / "checkpoints" / "best.ckpt")
    batch_sizes = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda idx, **kw: batch_sizes.append(len(idx)) or forward(idx, **kw))
    first, again = io.StringIO(), io.StringIO()
    write_samples(model, "ROMEO:", 20, num_samples=3, seed=3, out=first)
    assert set(batch_sizes) == {3}
    write_samples(model, "ROMEO:", 20, num_samples=3, seed=3, out=again)
    texts = first.getvalue().split("\n" + "-" * 40 + "\n")
    assert first.getvalue() == again.getvalue() and len(texts) == 3 and len(set(texts)) == 3
    assert all(text.startswith("ROMEO:") for text in texts)


def test_device_auto_is_the_cpu_here_and_a_missing_device_is_one_line():
    assert pick_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="device must be auto, cpu, cuda, cuda:N or mps, got gpu0"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="this machine has no cuda device"):
            pick_device("cuda")


def test_a_misspelt_option_is_one_line(trained_run):
    code, stderr, _ = run_cli("sample.py", f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", "prompt=ROMEO:", "max_new_tokns=30")
    assert code == 2
    assert stderr.strip().startswith("error: unknown option max_new_tokns; the options are ckpt, device, kv_cache, max_new_tokens,")


def test_a_checkpoint_trained_on_a_gpu_with_compile_and_bf16_loads_and_samples_on_this_cpu():
    """tests/data/h200_compiled_bf16.ckpt: a tiny v7 (32 wide, 2 layers, 300 steps) trained by
    `python train.py trainer=gpu model=v7 model.n_embd=32 model.n_head=4 model.n_layer=2
    data.block_size=32 data.batch_size=32 trainer.max_steps=300` on an NVIDIA H200 (torch 2.11,
    torch.compile, bf16-mixed). Its whole-split val loss there and here is the same model's."""
    from shakegpt.evaluate import score_checkpoint

    ckpt = ROOT / "tests" / "data" / "h200_compiled_bf16.ckpt"
    loss, scored, model = score_checkpoint(ckpt, "val", "cpu")
    assert (round(loss, 4), scored) == (2.8180, 111_539)
    code, stderr, stdout = run_cli("sample.py", f"ckpt={ckpt}", "prompt=ROMEO:", "max_new_tokens=30", "device=cpu")
    assert code == 0, stderr
    assert stdout.startswith("ROMEO:") and len(stdout.rstrip("\n")) == len("ROMEO:") + 30


def test_sample_script_without_the_cache_writes_the_same_text(monkeypatch):
    """kv_cache=false reaches the model (the lecture's loop), and threads= reaches torch."""
    from shakegpt.models.base import LanguageModel

    asked, stream = [], LanguageModel.stream
    monkeypatch.setattr(LanguageModel, "stream", lambda self, *args, **kw: asked.append(kw["kv_cache"]) or stream(self, *args, **kw))
    threads, set_threads = [], torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: threads.append(n) or set_threads(n))
    ckpt = ROOT / "tests" / "data" / "h200_compiled_bf16.ckpt"
    code, stderr, stdout = run_cli("sample.py", f"ckpt={ckpt}", "prompt=ROMEO:", "max_new_tokens=60", "device=cpu",
                                   "kv_cache=false", "threads=3")
    assert code == 0, stderr
    assert asked == [False] and threads[0] == 3
    cached = io.StringIO()
    write_samples(load_model(ckpt), "ROMEO:", 60, out=cached)
    assert asked == [False, True] and stdout == cached.getvalue()
    code, stderr, _ = run_cli("sample.py", f"ckpt={ckpt}", "kv_cache=maybe")
    assert code == 2 and stderr.strip() == "error: kv_cache must be true or false, got maybe"


def test_sampling_threads_follow_the_model_size_as_training_does():
    from shakegpt.common.threads import SINGLE_THREAD_MAX_PARAMS
    from shakegpt.sampling.generate import use_threads

    before = torch.get_num_threads()
    small = load_model(ROOT / "tests" / "data" / "v2_fb81f8b.ckpt")  # 5k parameters
    large = torch.nn.Linear(SINGLE_THREAD_MAX_PARAMS, 1)
    try:
        assert use_threads(small, None) == 1 == torch.get_num_threads()
        assert use_threads(large, None) == (os.cpu_count() or 1) == torch.get_num_threads()
        assert use_threads(small, 2) == 2
        with pytest.raises(UserError, match="threads must be a positive integer or null, got 0"):
            use_threads(small, 0)
    finally:
        torch.set_num_threads(before)
