"""A run's loggers: the ones the config chose (logger=tensorboard, csv, none, or several as
logger=[tensorboard,csv]), TensorBoard as a run's first screen should look (train and validation
loss on one chart), and the run's own record, metrics.jsonl, which every report reads."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import FileWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from shakegpt.bookkeeping.runs import RECORD
from shakegpt.common.config import flatten


def build_loggers(cfg: DictConfig, out: Path) -> list[Logger]:
    """The loggers of conf/logger/ the config chose (a dict of them: none for logger=none or
    logger=null), then the run's own record."""
    chosen = cfg.get("logger") or {}
    return [*(instantiate(logger) for logger in chosen.values() if logger is not None), RunRecord(out)]


class RunRecord(Logger):
    """The run's own record of what it logs, whatever the loggers: metrics.jsonl in the run
    directory, one JSON object a line, {"step", "tag", "value", "time"} for a scalar and {"step",
    "tag": "sample", "text", "time"} for a text sample. report.py, sweep summaries and the tools read
    it (bookkeeping.runs.read_logged). Each call is one write to a file opened for appending: a
    killed run leaves whole lines, and a resumed run continues the same file."""

    def __init__(self, run_dir: str | Path):
        super().__init__()
        self.run_dir = Path(run_dir)

    @property
    def name(self) -> str:
        return "record"

    @property
    def version(self) -> str:
        return ""  # none: Lightning's progress bar joins the loggers' versions into its v_num

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the config is in .hydra/

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        now = time.time()
        self.append([{"step": step, "tag": tag, "value": float(value), "time": now}
                     for tag, value in metrics.items() if tag != "epoch"])  # Lightning adds epoch to each

    @rank_zero_only
    def log_sample(self, text: str, step: int) -> None:
        self.append([{"step": step, "tag": "sample", "text": text, "time": time.time()}])

    def append(self, entries: list[dict]) -> None:
        with open(self.run_dir / RECORD, "ab") as file:
            file.write("".join(json.dumps(entry) + "\n" for entry in entries).encode())


def log_final(loggers: list[Logger], params: dict, metrics: dict) -> None:
    """The run's settings to every logger and, on TensorBoard's HParams row, its final losses
    (Lightning's other loggers take the settings alone); then each logger's files are closed."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics)
        else:
            logger.log_hyperparams(params)
        logger.finalize("success")

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
