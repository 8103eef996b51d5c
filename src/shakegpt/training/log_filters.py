"""Lightning's console lines that say nothing about the run, filtered out."""

from __future__ import annotations

import logging
import warnings


def quiet_lightning() -> None:
    """Drop Lightning's advertising tip and a deprecation warning it raises on itself."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # resuming
