"""What every version shares: the training step, the lecture's evaluation, AdamW, generation.

A version subclasses LanguageModel and defines only its layers and forward(idx) -> logits.
"""

from __future__ import annotations

import math
from typing import Iterator

import lightning as L
import torch
import torch.nn.functional as F

from shakegpt.data import Vocabulary
from shakegpt.errors import UserError
from shakegpt.schedules import make_scheduler

SPLITS = ("train", "val")  # the order of the datamodule's evaluation loaders


class DivergenceError(UserError):
    """A non-finite loss or weight: training stops and no checkpoint keeps the bad weights."""


class LanguageModel(L.LightningModule):
    def __init__(
        self,
        vocab: str,
        block_size: int,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: dict | None = None,
    ):
        super().__init__()
        # Plain values only: checkpoints then load with torch.load(weights_only=True).
        self.save_hyperparameters()
        self.vocab = Vocabulary(vocab)
        self.block_size = block_size
        self.lr = lr

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
                self.log(f"{split}/perplexity", torch.exp(metrics[f"{split}/loss"]), sync_dist=True)

    def make_optimizer(self, fused: bool = True) -> torch.optim.AdamW:
        """The training optimizer without its schedule: the range test sets the rate itself."""
        betas = tuple(self.hparams.betas)
        # fused: the whole update in one kernel, on CPUs as on GPUs (nanoGPT's GPU fast path); at
        # v6's size on this CPU it takes 0.18 ms a step against 0.69 (foreach) and 1.06 (default).
        implementation = {"fused": True} if fused else {"foreach": True}
        return torch.optim.AdamW(
            self.parameters(), lr=self.lr, weight_decay=self.hparams.weight_decay, betas=betas, **implementation
        )

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
        checkpoint["shakegpt"] = {"format": 1, "model_class": f"{type(self).__module__}.{type(self).__qualname__}"}
        checkpoint["rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint):
        rng = checkpoint.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

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
