"""Checkpoint files: written atomically, read as data only.

A checkpoint is something people share, so reading one can do nothing but read it. torch.load
runs with weights_only=True (tensors and plain containers; a file that would import anything is
refused). The model it names is looked up in the closed set of shakegpt's versions
(shakegpt.models.versions), never imported by name; its settings must be ones that class's
constructor takes, of the types it declares; and its sizes are checked against the weights the
file holds before anything of that size is allocated. Whatever fails is one sentence naming
the file.
"""

from __future__ import annotations

import inspect
import math
import pickle
import re
import types
import typing
import zipfile
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from shakegpt.common.errors import UserError
from shakegpt.models.base import LanguageModel
from shakegpt.models.versions import BY_PATH

# Hyperparameters of checkpoints from before the optimizer config group; sampling needs none.
LEGACY_SETTINGS = ("lr", "weight_decay", "betas")
# How the model was trained: checked to be plain values, never handed on (they name classes).
TRAINING_SETTINGS = ("optimizer", "scheduler")
# Buffers a model computes from its settings rather than loads (v8's rotary tables): a file's
# settings may not ask for more than this on top of the weights it holds.
COMPUTED_BUFFER_LIMIT = 1 << 30


def shown(value) -> str:
    """A value from a file, safe to print in one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_checkpoint(path: str | Path) -> dict:
    """A shakegpt checkpoint as a dict, its layout checked: tensors and plain values only, a
    model from shakegpt's versions, a state_dict of named tensors, settings in a dict."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a directory; name a .ckpt file in it, e.g. {path}/checkpoints/best.ckpt")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"unsupported global:?\s+(?:GLOBAL\s+)?(\S+)", str(exc), re.IGNORECASE)
        if found:
            raise UserError(
                f"refused to load {path}: it would import {found.group(1)}, and a checkpoint holds only tensors and plain values"
            ) from None
        raise UserError(f"{path} is corrupted or not a checkpoint file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, MemoryError) as exc:
        raise UserError(f"checkpoint {path} is corrupted or truncated ({str(exc).strip().splitlines()[0]})") from None
    check_layout(checkpoint, path)
    return checkpoint


def check_layout(checkpoint, path: Path) -> None:
    meta = checkpoint.get("shakegpt") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "model_class" not in meta:
        raise UserError(f"{path} is not a shakegpt checkpoint")
    if not isinstance(meta["model_class"], str) or meta["model_class"] not in BY_PATH:
        versions = ", ".join(version_name(cls) for cls in BY_PATH.values())
        raise UserError(f"refused to load {path}: its model {shown(meta['model_class'])} is not one of shakegpt's versions ({versions})")
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise UserError(f"{path} holds no state_dict of named tensors; it is damaged or not a shakegpt checkpoint")
    if not isinstance(checkpoint.get("hyper_parameters"), dict):
        raise UserError(f"{path} holds no hyper_parameters dict; it is damaged or not a shakegpt checkpoint")
    step = checkpoint.get("global_step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise UserError(f"{path}: global_step must be a non-negative integer, got {shown(step)}")


def version_name(cls: type) -> str:
    """v7, v3_ff, bigram: the file a class is defined in, as model= names it."""
    return cls.__module__.rpartition(".")[2]


def model_settings(checkpoint: dict, path: Path) -> tuple[type[LanguageModel], dict]:
    """(class, constructor arguments) of a checkpoint read by read_checkpoint: each setting one
    its class takes, of the declared type; the training settings checked but left out."""
    cls = BY_PATH[checkpoint["shakegpt"]["model_class"]]
    accepted = constructor_settings(cls)
    settings = {}
    for name, value in checkpoint["hyper_parameters"].items():
        if name in LEGACY_SETTINGS or name in TRAINING_SETTINGS:
            if not is_plain(value):
                raise UserError(f"refused to load {path}: its setting {name} holds {shown(value)}, not plain values")
            continue
        if name not in accepted:
            raise UserError(f"refused to load {path}: {version_name(cls)} takes no setting {shown(name)}")
        hint, _ = accepted[name]
        if not fits(value, hint):
            raise UserError(f"refused to load {path}: its setting {name}={shown(value)} is not {type_words(hint)}")
        settings[name] = value
    if checkpoint["shakegpt"].get("format", 1) == 1 and "attention_scale" in accepted:
        settings.setdefault("attention_scale", "head_size")  # files from before the setting scaled by head size
    required = [name for name, (_, default) in accepted.items() if default is inspect.Parameter.empty]
    missing = [name for name in required if name not in settings]
    if missing:
        raise UserError(f"{path} lacks the setting(s) {', '.join(missing)} that {version_name(cls)} needs")
    return cls, settings


def constructor_settings(cls: type) -> dict[str, tuple[object, object]]:
    """name -> (type hint, default, inspect.Parameter.empty when required) of every keyword
    cls's constructor chain names, from the class up to LanguageModel (a version that only
    passes *args, **kwargs on adds none)."""
    found: dict[str, tuple[object, object]] = {}
    for klass in cls.__mro__:
        if not issubclass(klass, LanguageModel):
            break
        init = vars(klass).get("__init__")
        if init is None:
            continue
        hints = typing.get_type_hints(init)
        for name, parameter in inspect.signature(init).parameters.items():
            if name != "self" and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                found.setdefault(name, (hints.get(name), parameter.default))
    return found


def fits(value, hint) -> bool:
    """Whether a value read from a file is of the type a constructor declares."""
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    if hint is dict or typing.get_origin(hint) is dict:
        return isinstance(value, dict) and is_plain(value)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in typing.get_args(hint))
    return False  # an undeclared type: nothing from a file is trusted to be it


def type_words(hint) -> str:
    return re.sub(r"\btyping\.|<class '(\w+)'>", r"\1", str(hint)).replace("NoneType", "None")


def is_plain(value) -> bool:
    """None, a number, a string, or lists and string-keyed dicts of those."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


class InitialisesNothing(TorchFunctionMode):
    """torch.nn.init's functions leave their tensor as it is. A meta skeleton's values are never
    read, and initialising meta tensors loads torch's compiler (a second of every sample.py)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]  # each names its tensor `tensor`
        return func(*args, **kwargs)


def check_sizes(cls: type[LanguageModel], settings: dict, state: dict, path: Path) -> None:
    """The settings build exactly the weights the file holds: checked on a model built on the
    meta device, which allocates nothing, so settings that ask for 50 GB cost nothing here."""
    if settings.get("n_layer", 1) > len(state):  # bounds the modules the meta model creates
        raise UserError(f"{path}: its setting n_layer={settings['n_layer']} does not match its {len(state)} tensors")
    with torch.device("meta"), InitialisesNothing():
        skeleton = construct(cls, settings, path)
    expected = skeleton.state_dict()
    if expected.keys() != state.keys():
        missing, extra = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(map(shown, extra[:3]))}"
        raise UserError(f"{path}: its weights do not match a {version_name(cls)} with its settings ({detail})")
    for name, tensor in expected.items():
        if tensor.shape != state[name].shape or not state[name].is_floating_point():
            raise UserError(
                f"{path}: its weights do not match its settings: {name} is {tuple(state[name].shape)} "
                f"{str(state[name].dtype).removeprefix('torch.')} in the file, {tuple(tensor.shape)} for a {version_name(cls)} with its settings"
            )
    computed = sum(b.numel() * b.element_size() for name, b in skeleton.named_buffers() if name not in expected)
    if computed > COMPUTED_BUFFER_LIMIT:
        raise UserError(f"refused to load {path}: its settings ask for {computed / 2**30:.0f} GiB of computed buffers")


def construct(cls: type[LanguageModel], settings: dict, path: Path) -> LanguageModel:
    try:
        return cls(**settings)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def load_model(path: str | Path) -> LanguageModel:
    """A model rebuilt from a checkpoint alone (its vocabulary and settings are inside), in eval
    mode on the CPU; any file that is not such a checkpoint is refused in one line."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    cls, settings = model_settings(checkpoint, path)
    check_sizes(cls, settings, checkpoint["state_dict"], path)
    model = construct(cls, settings, path)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def check_resumable(path: str | Path, model: LanguageModel) -> int:
    """The step of the checkpoint a run resumes from, once it is known to hold this model: the
    same version, weights of the same names and shapes."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    saved = BY_PATH[checkpoint["shakegpt"]["model_class"]]
    if saved is not model.version:  # a trainable(version) model (shakegpt.training.module)
        raise UserError(
            f"{path} holds a {version_name(saved)} model and this command trains {version_name(type(model))}: "
            f"resume it with model={version_name(saved)}, or start a new run"
        )
    state, expected = checkpoint["state_dict"], model.state_dict()
    for name, tensor in expected.items():
        if name not in state or state[name].shape != tensor.shape:
            found = tuple(state[name].shape) if name in state else "missing"
            raise UserError(
                f"{path} does not fit this command's model: {name} is {found} there, {tuple(tensor.shape)} here; "
                "resume with the settings it was trained with, or start a new run"
            )
    return checkpoint.get("global_step", 0)
