"""What every version shares: the training step, the lecture's evaluation, generation.

A version subclasses LanguageModel and defines only its layers and forward(idx) -> logits.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import lightning as L
import torch
import torch.nn.functional as F

from shakegpt.common.errors import UserError
from shakegpt.data import EVAL_SPLITS, make_tokenizer
from shakegpt.models.kv_cache import CachedLogits


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
        """vocab: the tokenizer's symbols, one string; tokenizer: which kind (char or byte).
        optimizer, scheduler: the config groups' settings the model trains with."""
        super().__init__()
        # Plain values only: checkpoints then load with torch.load(weights_only=True).
        self.save_hyperparameters()
        self.tokenizer = make_tokenizer(tokenizer, vocab)
        self.block_size = block_size
        # What turns hparams.optimizer and hparams.scheduler into torch objects lives on the
        # training side and is handed in from outside (shakegpt.training.run.build_model does),
        # as lightning-hydra-template hands its module the optimizer: loading or sampling a
        # model then imports no optimizer code. An attribute, not a hyperparameter, so that
        # checkpoints keep plain values only.
        self.optimizer_and_schedule: Callable[[LanguageModel], dict] | None = None

    def forward(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:  # (B, T) -> (B, T, vocab)
        """start: the position of idx's first token; above 0 only for a KV cache's steps
        (shakegpt.models.kv_cache), whose attention layers hold the positions before it."""
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

    @torch.inference_mode()  # no_grad, and no version counters either: a cached step is mostly overhead
    def stream(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        kv_cache: bool = True,
    ) -> Iterator[torch.Tensor]:
        """Yield (B, 1) next tokens one at a time, each sampled from the last block_size tokens.
        kv_cache: run each new token alone against the keys and values kept so far
        (shakegpt.models.kv_cache); the same tokens as kv_cache=False, the lecture's loop."""
        next_logits = CachedLogits(self) if kv_cache else lambda idx: self(idx[:, -self.block_size :])[:, -1]
        try:
            for _ in range(max_new_tokens):
                next_token = self.sample_next(next_logits(idx), temperature, top_k, generator)  # (B, 1)
                idx = torch.cat((idx, next_token), dim=1)
                yield next_token
        finally:  # also when the caller stops early: no cache stays on the model
            if kv_cache:
                next_logits.close()

    @staticmethod
    def sample_next(logits, temperature: float, top_k: int | None, generator) -> torch.Tensor:  # (B, vocab) -> (B, 1)
        # The likeliest at 0 (softmax does not change) and a divisor the logits' type can hold: a
        # tiny temperature then sends the others to -inf, greedy sampling, rather than to nan.
        divisor = max(temperature, torch.finfo(logits.dtype).tiny)
        logits = (logits - logits.amax(dim=-1, keepdim=True)) / divisor
        if top_k is not None:
            kth = torch.topk(logits, top_k).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)

    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
        """idx (B, T) extended by max_new_tokens sampled tokens."""
        return torch.cat([idx, *self.stream(idx, max_new_tokens, **kwargs)], dim=1)
