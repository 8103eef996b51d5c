"""TensorBoard as a run's first screen should look: train and validation loss on one chart."""

from __future__ import annotations

import contextlib

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard import FileWriter
from torch.utils.tensorboard.summary import hparams

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
                for summary in hparams(params, metrics):  # the experiment, session start and end
                    writer.add_summary(summary)

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if not self.layout_written:
            self.experiment.add_custom_scalars(LAYOUT)
            self.layout_written = True
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)
