"""A checkpoint from someone else can only be read: every reader refuses a crafted file in one
line (exit 2) before anything it names is called, opened or allocated."""

import shutil

import pytest
import torch

from shakegpt import attention, evaluate
from shakegpt.bookkeeping.checkpoints import load_model, read_checkpoint
from shakegpt.common.errors import UserError
from shakegpt.models.versions import BY_PATH
from tests.helpers import ROOT, TINY, run_cli

DATA = ROOT / "tests" / "data"
VERSIONS = "(bigram, v2, v3_ff, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, v16)"


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "canary.txt"
    path.write_text("untouched")
    return path


def crafted(tmp_path, trained_run, name, model_class=None, replace=False, **hyper_parameters):
    """The trained run's best.ckpt with its model class or settings changed (replace: only
    these settings): every file loads under weights_only=True (plain values only)."""
    checkpoint = read_checkpoint(trained_run / "checkpoints" / "best.ckpt")
    if model_class is not None:
        checkpoint["shakegpt"]["model_class"] = model_class
    checkpoint["hyper_parameters"] = ({} if replace else checkpoint["hyper_parameters"]) | hyper_parameters
    path = tmp_path / f"{name}.ckpt"
    torch.save(checkpoint, path)
    return path


def writes(canary):  # what hydra's instantiate would run: write_text(canary, ...)
    return {"_target_": "shakegpt.common.atomic.write_text", "path": str(canary), "text": "overwritten"}


def starts_a_process(canary):  # a tool's helper that runs `python train.py` (Hydra blocks subprocess.run itself)
    return {"_target_": "shakegpt.tools.runner.run_version", "version": "bigram", "run_dir": {"_target_": "pathlib.Path", "_args_": [str(canary.parent / "started")]},
            "overrides": ["trainer.max_steps=1", "trainer.val_check_interval=1", "data.eval_iters=1"]}


def every_reader(path, tmp_path) -> list[tuple[int, str]]:
    """(exit code, stderr) of sample.py, evaluate, attention and a resume, each given path."""
    results = [run_cli("sample.py", f"ckpt={path}", "max_new_tokens=5")[:2]]
    for module in (evaluate, attention):
        results.append(run_module(module, [f"ckpt={path}"]))
    results.append(run_cli("train.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'resumed'}", *TINY)[:2])
    return results


def run_module(module, argv) -> tuple[int, str]:
    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            module.main(argv)
        except SystemExit as exc:
            return exc.code, stderr.getvalue()
    return 0, stderr.getvalue()


FUNCTIONS = [
    # hydra's instantiate, imported into models/base.py: it would call what the settings name
    ("shakegpt.models.base.instantiate", {"config": "writes"}),
    ("shakegpt.models.base.instantiate", {"config": "starts_a_process"}),
    ("shakegpt.models.v2.init_weights", {}),  # a function of a model module
    ("shakegpt.models.base.LanguageModel", {}),  # the base class, not a version
    ("shakegpt.models.v2.CausalSelfAttention", {}),  # a module, not a model
    ("shakegpt.models.v2.check_used", {}),
    ("os.system", {}),
    ("v99", {}),
    (["shakegpt.models.v6.V6"], {}),  # not a string
]


@pytest.mark.slow
@pytest.mark.parametrize("model_class, settings", FUNCTIONS, ids=lambda v: str(v)[:40])
def test_a_checkpoint_naming_anything_but_a_version_is_refused_by_every_reader(
    tmp_path, trained_run, canary, model_class, settings
):
    payloads = {"writes": writes(canary), "starts_a_process": starts_a_process(canary)}
    settings = {k: payloads.get(v, v) if isinstance(v, str) else v for k, v in settings.items()}
    path = crafted(tmp_path, trained_run, "crafted", model_class, replace=bool(settings), **settings)
    for code, stderr in every_reader(path, tmp_path):
        assert code == 2 and stderr.startswith(f"error: refused to load {path}: its model ")
        assert stderr.rstrip().endswith(f"is not one of shakegpt's versions {VERSIONS}") and stderr.count("\n") == 1
    assert canary.read_text() == "untouched" and not (tmp_path / "started").exists()
    assert not (tmp_path / "resumed" / "checkpoints").exists()


SETTINGS = [
    ({"config": "writes"}, "v6 takes no setting 'config'"),
    ({"_target_": "os.system"}, "v6 takes no setting '_target_'"),
    ({"n_embd": "32"}, "its setting n_embd='32' is not int"),
    ({"n_embd": 32.0}, "its setting n_embd=32.0 is not int"),
    ({"n_layer": True}, "its setting n_layer=True is not int"),
    ({"dropout": float("nan")}, "its setting dropout=nan is not float"),
    ({"vocab": ["a", "b"]}, "its setting vocab=['a', 'b'] is not str"),
    ({"head_size": "x"}, "its setting head_size='x' is not int | None"),
    ({"optimizer": {"_target_": "torch.optim.AdamW", "lr": torch.tensor(1.0)}}, "its setting optimizer holds"),
]


@pytest.mark.parametrize("settings, message", SETTINGS, ids=lambda v: str(v)[:30])
def test_settings_its_class_does_not_take_or_of_the_wrong_type_are_refused(tmp_path, trained_run, canary, settings, message):
    settings = {k: writes(canary) if v == "writes" else v for k, v in settings.items()}
    path = crafted(tmp_path, trained_run, "settings", **settings)
    code, stderr, _ = run_cli("sample.py", f"ckpt={path}", "max_new_tokens=5")
    assert code == 2 and stderr.startswith(f"error: refused to load {path}: {message}") and stderr.count("\n") == 1
    assert canary.read_text() == "untouched"


def edited(tmp_path, trained_run, name, edit):
    checkpoint = read_checkpoint(trained_run / "checkpoints" / "best.ckpt")
    edit(checkpoint)
    path = tmp_path / f"{name}.ckpt"
    torch.save(checkpoint, path)
    return path


MALFORMED = [
    ("huge", lambda c: c["hyper_parameters"].update(n_embd=65536, n_layer=64), "n_layer=64 does not match its"),
    ("wide", lambda c: c["hyper_parameters"].update(n_embd=65536), "its weights do not match its settings: token_embedding.weight"),
    ("long", lambda c: c["hyper_parameters"].update(block_size=10**12), "position_embedding.weight is (8, 32) float32 in the file"),
    ("vocab", lambda c: c["hyper_parameters"].update(vocab=c["hyper_parameters"]["vocab"][:-1]), "token_embedding.weight is (65, 32)"),
    ("no_state", lambda c: c.pop("state_dict"), "holds no state_dict of named tensors"),
    ("list_state", lambda c: c.update(state_dict=[1, 2]), "holds no state_dict of named tensors"),
    ("list_settings", lambda c: c.update(hyper_parameters=[1, 2]), "holds no hyper_parameters dict"),
    ("extra", lambda c: c["hyper_parameters"].update(n_heads=4), "v6 takes no setting 'n_heads'"),
    ("missing_setting", lambda c: c["hyper_parameters"].pop("vocab"), "lacks the setting(s) vocab that v6 needs"),
    ("missing_module", lambda c: c["state_dict"].pop("lm_head.bias"), "(missing lm_head.bias)"),
    ("extra_module", lambda c: c["state_dict"].update({"x.weight": torch.zeros(2)}), "(unexpected 'x.weight')"),
    ("int_weights", lambda c: c["state_dict"].update({"lm_head.bias": torch.zeros(65, dtype=torch.long)}), "lm_head.bias is (65,) int64"),
    ("step", lambda c: c.update(global_step="10"), "global_step must be a non-negative integer, got '10'"),
    ("zero_width", lambda c: c["hyper_parameters"].update(n_embd=0), "model.n_embd must be a positive integer"),
]


@pytest.mark.parametrize("name, edit, message", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_and_oversized_checkpoints_are_one_line_before_any_allocation(tmp_path, trained_run, name, edit, message):
    path = edited(tmp_path, trained_run, name, edit)
    with pytest.raises(UserError) as raised:
        load_model(path)
    assert str(raised.value).startswith((f"{path}", f"refused to load {path}")) and message in str(raised.value)
    code, stderr, _ = run_cli("sample.py", f"ckpt={path}", "max_new_tokens=5")
    assert code == 2 and stderr == f"error: {raised.value}\n"


def test_a_rotary_model_s_block_size_cannot_ask_for_huge_computed_tables(tmp_path):
    from shakegpt.models.v8 import V8
    from shakegpt.training.module import trainable

    model = trainable(V8)(vocab="abcd", block_size=8, n_embd=16, n_head=2, n_layer=1)
    path = tmp_path / "v8.ckpt"
    torch.save({"shakegpt": {"model_class": "shakegpt.models.v8.V8"}, "state_dict": model.state_dict(),
                "hyper_parameters": dict(model.hparams) | {"block_size": 10**12}}, path)
    with pytest.raises(UserError, match=rf"refused to load {path}: its settings ask for \d+ GiB of computed buffers"):
        load_model(path)


def test_the_closed_set_is_exactly_the_configs_models():
    from omegaconf import OmegaConf

    targets = {OmegaConf.load(f).model._target_ for f in (ROOT / "conf" / "model").glob("*.yaml")}
    assert set(BY_PATH) == targets


@pytest.mark.parametrize("name, version, chars", [("v2_fb81f8b.ckpt", "V2", 20), ("h200_compiled_bf16.ckpt", "V7", 20)])
def test_checkpoints_of_earlier_versions_of_the_lab_still_load_and_sample(name, version, chars):
    """v2_fb81f8b.ckpt: written by the first commit (lr, weight_decay and betas as top-level
    settings); h200_compiled_bf16.ckpt: a compiled bf16 run on a GPU, with the optimizer group."""
    assert type(load_model(DATA / name)).__name__ == version
    code, stderr, stdout = run_cli("sample.py", f"ckpt={DATA / name}", f"max_new_tokens={chars}", "device=cpu")
    assert code == 0, stderr
    assert len(stdout) == chars + 1


def test_resuming_another_version_s_checkpoint_is_one_line(tmp_path, trained_run):
    run_dir = tmp_path / "run"
    code, stderr, _ = run_cli(
        "train.py", "model=v5", f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={run_dir}", *TINY
    )
    assert code == 2 and stderr.strip().splitlines()[-1] == (
        f"error: {trained_run / 'checkpoints' / 'last.ckpt'} holds a v6 model and this command trains v5: "
        "resume it with model=v6, or start a new run"
    )
    assert not (run_dir / "checkpoints").exists()


def test_resuming_a_checkpoint_of_other_sizes_is_one_line(tmp_path, trained_run):
    code, stderr, _ = run_cli(
        "train.py", "model=v6", "model.n_embd=64", f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'run'}", *TINY,
    )
    assert code == 2 and "does not fit this command's model: token_embedding.weight is (65, 32) there, (65, 64) here" in stderr


@pytest.mark.slow
def test_a_resumed_run_deletes_no_file_its_checkpoint_s_record_names(tmp_path, trained_run, canary):
    """Lightning deletes a superseded best checkpoint by the path its saved record holds; a
    record naming a file outside the run's checkpoints is ignored, and the file survives."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(last)
    escape = f"{run_dir / 'checkpoints'}/../../{canary.name}"  # inside the directory, as Lightning compares
    for key, state in checkpoint["callbacks"].items():
        if key.startswith("Checkpoint"):
            state |= {"dirpath": str(run_dir / "checkpoints"), "best_model_path": escape, "kth_best_model_path": escape,
                      "best_k_models": {escape: torch.tensor(99.0)}, "best_model_score": torch.tensor(99.0),
                      "kth_value": torch.tensor(99.0)}
    torch.save(checkpoint, last)
    (run_dir / "status.json").write_text('{"state": "interrupted"}')
    code, stderr, _ = run_cli("train.py", "model=v6", "resume=auto", f"hydra.run.dir={run_dir}", *TINY[1:], "trainer.max_steps=40")
    assert code == 0, stderr
    assert canary.read_text() == "untouched"


def test_checkpoints_from_before_the_attention_scale_setting_keep_the_head_size_scale_they_trained_with(tmp_path, trained_run):
    """Format 1 files (before model.attention_scale) scaled scores by head_size**-0.5; files
    written now record the setting itself."""
    assert load_model(DATA / "v2_fb81f8b.ckpt").body.scale == 16**-0.5  # one head of 16 in a 32-wide model
    assert load_model(DATA / "h200_compiled_bf16.ckpt").body[0].sa.scale == 8**-0.5  # 4 heads of 8
    checkpoint = read_checkpoint(trained_run / "checkpoints" / "best.ckpt")
    assert checkpoint["shakegpt"]["format"] == 2 and checkpoint["hyper_parameters"]["attention_scale"] == "n_embd"
    assert load_model(trained_run / "checkpoints" / "best.ckpt").body[0].sa.scale == 32**-0.5
