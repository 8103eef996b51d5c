"""Hydra multirun glue: a summary when a sweep ends, and Optuna's default search space."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from shakegpt.data import PROJECT_ROOT
from shakegpt.errors import report_user_errors
from shakegpt.report import write_sweep_summary
from shakegpt.status import write_status

log = logging.getLogger(__name__)
SEARCH_SPACE = PROJECT_ROOT / "conf" / "optuna_search_space.yaml"


class SweepSummary(Callback):
    """Writes summary.md/.csv and curves.png into the sweep directory; the multirun exits
    non-zero only when every job failed. The sweep's own status.json says whether it ended,
    which is how resume=auto finds an unfinished sweep."""

    def on_multirun_start(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        sweep.mkdir(parents=True, exist_ok=True)
        write_status(sweep, "running")

    @report_user_errors  # a summary that cannot be written: one line, exit 2
    def on_multirun_end(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        rows = write_sweep_summary(sweep)
        write_status(sweep, "finished")
        failed = [r for r in rows if r["status"].startswith("failed")]
        log.info("sweep summary: %s (%d of %d jobs failed)", sweep / "summary.md", len(failed), len(rows))
        if rows and len(failed) == len(rows):
            print(f"error: every job of the sweep failed; see {sweep / 'summary.md'}", file=sys.stderr)
            sys.exit(1)


def register_plugin_defaults() -> None:
    """Give two plugins shakegpt's defaults, so their one-word selection is enough:
    `hydra/sweeper=optuna` searches conf/optuna_search_space.yaml, and
    `hydra/launcher=submitit_slurm` asks SLURM for trainer.num_nodes nodes with one task and
    one GPU per trainer.devices (what Lightning's DDP expects under SLURM).
    Plugins store their configs when Hydra scans them, and a YAML file of the same name cannot
    extend them, so scan first, then store the configs again with these defaults."""
    Plugins.instance()
    store = ConfigStore.instance()
    try:
        from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
        from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
    except ImportError:
        return
    settings = OmegaConf.to_container(OmegaConf.load(SEARCH_SPACE))
    store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf(**settings), provider="shakegpt")
    slurm = SlurmQueueConf(
        nodes="${trainer.num_nodes}", tasks_per_node="${trainer.devices}", gpus_per_node="${trainer.devices}"
    )
    store.store(group="hydra/launcher", name="submitit_slurm", node=slurm, provider="shakegpt")


def suggest_dropout(config, trial) -> None:
    """Optuna's search over model.dropout, only for versions that have dropout (v7): v2..v6 have
    none, and overriding a key a model lacks is an error."""
    if "dropout" in config.model:
        trial.suggest_float("model.dropout", 0.0, 0.3)
