"""What every version shares: the training step, the lecture's evaluation, the optimizer, generation.

A version subclasses LanguageModel and defines only its layers and forward(idx) -> logits.
"""

from __future__ import annotations

import math
from typing import Iterator

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import get_class, instantiate

from shakegpt.common.errors import UserError
from shakegpt.data import make_tokenizer
from shakegpt.training.optimizers import MuonWithAdamW
from shakegpt.training.schedules import make_scheduler

SPLITS = ("train", "val")  # the order of the datamodule's evaluation loaders


class DivergenceError(UserError):
    """A non-finite loss or weight: training stops and no checkpoint keeps the bad weights."""


class LanguageModel(L.LightningModule):
    def __init__(
        self,
        vocab: str,
        block_size: int,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        tokenizer: str = "char",
    ):
        super().__init__()
        # Plain values only: checkpoints then load with torch.load(weights_only=True).
        self.save_hyperparameters()
        self.vocab = make_tokenizer(tokenizer, vocab)  # vocab: the tokenizer's symbols, one string
        self.block_size = block_size

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, vocab)
        raise NotImplementedError

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self(idx)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

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
        split = SPLITS[dataloader_idx]
        # Chunks hold whole batches of equal size, so the size-weighted mean over chunks is the
        # lecture's mean over eval_iters batches.
        self.log(f"{split}/loss", self.loss(*batch), batch_size=len(x), add_dataloader_idx=False, sync_dist=True)

    def on_validation_epoch_end(self):
        metrics = self.trainer.callback_metrics
        for split in SPLITS:
            if f"{split}/loss" in metrics:
                loss = metrics[f"{split}/loss"]
                self.log(f"{split}/perplexity", torch.exp(loss), sync_dist=True)
                # bits per character (per byte with data.tokenizer=byte), the unit of enwik8 and text8
                self.log(f"{split}/bpc", loss / math.log(2), sync_dist=True)

    def muon_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The hidden 2-D weights optimizer=muon hands to Muon, by name: every trainable matrix
        but the embeddings (token, position) and lm_head, i.e. the attention and feed-forward
        Linear weights. Muon orthogonalises a matrix's update, which suits weights that map
        features to features; the input and output layers (and all 1-D parameters) stay on AdamW."""
        outer = {id(m.weight) for m in self.modules() if isinstance(m, torch.nn.Embedding)}
        if isinstance(getattr(self, "lm_head", None), torch.nn.Module):
            outer |= {id(p) for p in self.lm_head.parameters()}
        return {
            name: p
            for name, p in self.named_parameters()
            if p.requires_grad and p.dim() == 2 and id(p) not in outer
        }

    def parameter_groups(self, weight_decay: float, decay: str, exclude: set[int] = frozenset()) -> list[dict]:
        """decay=all: one group, as the lecture. decay=matrices (nanoGPT): weight decay on 2-D
        weights only; it shrinks what multiplies activations, while decaying biases and
        LayerNorm gains only pulls them away from their useful values. exclude: ids of
        parameters another optimizer takes (Muon's)."""
        if decay not in ("all", "matrices"):
            raise UserError(f"optimizer.decay must be all or matrices, got {decay}")
        params = [p for p in self.parameters() if p.requires_grad and id(p) not in exclude]
        if decay == "all":
            return [{"params": params, "weight_decay": weight_decay}]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return [group for group in groups if group["params"]]

    def make_optimizer(self, fused: bool = True) -> torch.optim.Optimizer:
        """The training optimizer (config group optimizer/) without its schedule: the range test
        sets the rate itself. fused=False turns a fused update into torch's foreach one.
        optimizer=muon: Muon on muon_parameters(), AdamW (these settings) on the rest."""
        settings = dict(self.hparams.optimizer or {"_target_": "torch.optim.AdamW", "lr": 1e-3})
        if "betas" in settings:
            settings["betas"] = tuple(settings["betas"])
        if not fused and settings.get("fused"):
            settings |= {"fused": False, "foreach": True}
        extra = {}
        if issubclass(get_class(settings["_target_"]), MuonWithAdamW):
            muon = self.muon_parameters()
            if not muon:
                raise UserError(
                    f"optimizer=muon needs hidden weight matrices, and {type(self).__name__} has none: use optimizer=adamw"
                )
            extra["muon_params"] = list(muon.values())
        exclude = {id(p) for p in extra.get("muon_params", ())}
        groups = self.parameter_groups(settings.pop("weight_decay", 0.0), settings.pop("decay", "all"), exclude)
        return instantiate(settings, params=groups, **extra, _convert_="all")

    def configure_optimizers(self):
        # Lightning refuses gradient clipping under mixed precision when the optimizer unscales
        # gradients itself, as fused ones do: there the update runs as foreach.
        clipped_mixed = bool(self.trainer.gradient_clip_val) and "mixed" in str(self.trainer.precision)
        optimizer = self.make_optimizer(fused=not clipped_mixed)
        schedule = make_scheduler(optimizer, self.trainer.max_steps, **(self.hparams.scheduler or {}))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

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
        checkpoint["shakegpt"] = {"format": 2, "model_class": f"{type(self).__module__}.{type(self).__qualname__}"}
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

    @torch.no_grad()
    def stream(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield (B, 1) next tokens one at a time, each sampled from the last block_size tokens."""
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.block_size :])[:, -1, :] / temperature  # (B, vocab)
            if top_k is not None:
                kth = torch.topk(logits, top_k).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            next_token = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
            idx = torch.cat((idx, next_token), dim=1)
            yield next_token

    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
        """idx (B, T) extended by max_new_tokens sampled tokens."""
        return torch.cat([idx, *self.stream(idx, max_new_tokens, **kwargs)], dim=1)
