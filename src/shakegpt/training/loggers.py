"""TensorBoard as a run's first screen should look: train and validation loss on one chart."""

from __future__ import annotations

import contextlib

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import FileWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from shakegpt.common.config import flatten

# TensorBoard's Custom Scalars tab: each chart overlays the tags its regexes match.
LAYOUT = {
    "loss": {
        "train and validation loss (the lecture's estimate at each evaluation)": ["Multiline", [r"^train/loss$", r"^val/loss$"]],
        "training loss at each logged step": ["Multiline", [r"^train/step_loss$"]],
    },
}


class TensorBoard(TensorBoardLogger):
    """Lightning's TensorBoard logger writing into the run directory itself, so TensorBoard
    names a run after it (not `<run>/tensorboard`), without the `epoch` scalar Lightning adds to
    every record (the training stream is one endless epoch), and with the loss layout above."""

    def __init__(self, save_dir: str, **kwargs):
        super().__init__(save_dir, name="", version="", **kwargs)
        self.layout_written = False

    @rank_zero_only
    def log_hyperparams(self, params, metrics: dict | None = None, step: int | None = None) -> None:
        """The HParams tab's row for this run. Of `metrics` only the tags count: the tab shows
        each tag's last logged value, so no extra one-point scalar card is written for them.
        params: flat scalars."""
        super().log_hyperparams(params)
        if metrics:
            # A writer of its own, in the run directory: the experiment's has been closed by the
            # end of fit, and reopening it is private (SummaryWriter._get_file_writer).
            with contextlib.closing(FileWriter(self.experiment.get_logdir())) as writer:
                for summary in hparams_summaries(params, metrics):  # the experiment, session start and end
                    writer.add_summary(summary)

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if not self.layout_written:
            self.experiment.add_custom_scalars(LAYOUT)
            self.layout_written = True
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)


# What shapes a run's result, for TensorBoard's hparams view; plumbing (callbacks, logger,
# checkpoint timing, class paths, the lecture's reference losses) would bury it.
NOT_HPARAMS = (
    "callbacks.", "logger.", "checkpoint.", "lr_range_test.", "lecture.", "resume", "ckpt_path", "sample_tokens",
    "attention_images",
)


def hparams(cfg: DictConfig, lr: float) -> dict:
    """The config as flat scalars for TensorBoard's hparams view, with the learning rate used."""
    flat = flatten(OmegaConf.to_container(cfg, resolve=True)) | {"optimizer.lr": lr}
    kept = {k: v for k, v in flat.items() if not k.startswith(NOT_HPARAMS) and not k.endswith("_target_")}
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in kept.items()}
