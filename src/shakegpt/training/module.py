"""The training side of a model: Lightning's steps, its optimizer and its checkpoint hooks.

A version (shakegpt.models) is a plain torch module. trainable(V7) is V7 with TrainingSteps mixed
in after it, the class train.py builds and Lightning fits: the same layers, so the same
state_dict, and its checkpoints name V7 itself, which sampling and evaluation rebuild without
Lightning (shakegpt.bookkeeping.checkpoints).
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Callable

import lightning as L
import torch
from hydra.utils import instantiate

from shakegpt.bookkeeping.checkpoints import constructor_settings
from shakegpt.common.errors import UserError
from shakegpt.data import EVAL_SPLITS
from shakegpt.models.base import LanguageModel
from shakegpt.models.versions import class_path


class DivergenceError(UserError):
    """A non-finite loss or weight: training stops and no checkpoint keeps the bad weights."""


class TrainingSteps(L.LightningModule):
    """Mixed in after a version: LanguageModel's constructor hands this one the training settings."""

    def __init__(self, optimizer: dict | None = None, scheduler: dict | None = None):
        """optimizer, scheduler: the config groups' settings the model trains with."""
        super().__init__()
        # What turns hparams.optimizer and hparams.scheduler into torch objects lives on the
        # training side and is handed in from outside (shakegpt.training.run.build_model does),
        # as lightning-hydra-template hands its module the optimizer. An attribute, not a
        # hyperparameter, so that checkpoints keep plain values only.
        self.optimizer_and_schedule: Callable[[TrainingSteps], dict] | None = None

    def training_step(self, batch, batch_idx):
        loss = self.loss(*batch)
        log_step = (self.global_step + 1) % self.trainer.log_every_n_steps == 0
        # A non-finite loss stops training before it updates the weights. Reading the loss is
        # free on CPU; on a GPU it waits for the step, so there it is read on logging steps only
        # (and no checkpoint is ever written with non-finite weights).
        if (log_step or loss.device.type == "cpu") and not math.isfinite(loss.item()):
            raise self.divergence(f"the training loss became {loss.item()}", self.global_step + 1)
        if log_step:
            self.log("train/step_loss", loss, prog_bar=True)
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, _ = batch
        split = EVAL_SPLITS[dataloader_idx]
        # Chunks hold whole batches of equal size, so the size-weighted mean over chunks is the
        # lecture's mean over eval_iters batches.
        self.log(f"{split}/loss", self.loss(*batch), batch_size=len(x), add_dataloader_idx=False, sync_dist=True)

    def on_validation_epoch_end(self):
        metrics = self.trainer.callback_metrics
        for split in EVAL_SPLITS:
            if f"{split}/loss" in metrics:
                loss = metrics[f"{split}/loss"]
                self.log(f"{split}/perplexity", torch.exp(loss), sync_dist=True)
                # bits per character (per byte with data.tokenizer=byte), the unit of enwik8 and text8
                self.log(f"{split}/bpc", loss / math.log(2), sync_dist=True)

    def configure_optimizers(self):
        if self.optimizer_and_schedule is None:
            raise RuntimeError(
                "no optimizer attached: build the model with shakegpt.training.run.build_model, or set "
                "model.optimizer_and_schedule = shakegpt.training.optimizers.optimizer_and_schedule"
            )
        return self.optimizer_and_schedule(self)

    def divergence(self, what: str, step: int) -> DivergenceError:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        return DivergenceError(
            f"{what} at step {step} with learning rate {lr:.3g}; lower optimizer.lr "
            "(lr_find=true runs the range test); checkpoints from before it are kept"
        )

    def on_save_checkpoint(self, checkpoint):
        # A step can turn the weights non-finite before the loss shows it: never save those.
        if not all(torch.isfinite(p).all() for p in self.parameters()):
            raise self.divergence("the weights became non-finite", self.global_step)
        # What sample.py needs to rebuild the model from the file alone (the vocabulary and the
        # architecture are in hyper_parameters), and the global RNG that dropout draws from,
        # which Lightning does not save: a resumed run then continues exactly.
        # format 2: attention_scale and init are settings (format 1 files scaled by head size).
        checkpoint["shakegpt"] = {"format": 2, "model_class": class_path(self.version)}
        checkpoint["rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        if torch.backends.mps.is_available():  # dropout on an Apple GPU draws from its own generator
            checkpoint["rng"]["mps"] = torch.mps.get_rng_state()

    def on_load_checkpoint(self, checkpoint):
        rng = checkpoint.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if "mps" in rng and torch.backends.mps.is_available():
            torch.mps.set_rng_state(rng["mps"])


@functools.cache
def trainable(version: type[LanguageModel]) -> type:
    """version with TrainingSteps mixed in, built from settings by name, which it keeps as its
    hyperparameters (every constructor setting, defaults included: what a checkpoint records)."""

    def __init__(self, **settings):
        version.__init__(self, **settings)
        self.save_hyperparameters(every_setting(type(self), settings))

    # Named as the version, in its module: messages and version_name(type(model)) read v7.
    attributes = {"__init__": __init__, "version": version, "__module__": version.__module__}
    return type(version.__name__, (version, TrainingSteps), attributes)


def instantiate_trainable(model_config, **settings) -> TrainingSteps:
    """The version a model config group names (conf/model/v7.yaml), built by Hydra with these
    settings, as trainable(version)."""
    # Not recursive: the optimizer's config reaches the model as a plain dict, built in
    # configure_optimizers (by optimizer_and_schedule) once the parameters exist.
    version = instantiate(model_config, **settings, _convert_="all", _recursive_=False, _partial_=True)
    return trainable(version.func)(**version.keywords)


def every_setting(cls: type, given: dict) -> dict:
    """The given settings over the defaults of every keyword the version's constructors and
    TrainingSteps' name."""
    training = inspect.signature(TrainingSteps.__init__).parameters.values()
    defaults = {name: default for name, (_, default) in constructor_settings(cls).items()}
    defaults |= {parameter.name: parameter.default for parameter in training if parameter.name != "self"}
    return {name: value for name, value in defaults.items() if value is not inspect.Parameter.empty} | given
