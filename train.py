"""Train one of the lecture's models: python train.py model=v6 [overrides]; -m for sweeps."""

from shakegpt.common.errors import exit_quietly_on_ctrl_c

exit_quietly_on_ctrl_c()  # first: Ctrl-C while the imports below run (seconds) is one line

import logging

import hydra

from shakegpt.common.atomic import quiet_background_write_errors
from shakegpt.common.errors import report_user_errors
from shakegpt.training.cli import run_interruptible
from shakegpt.training.job import train_job


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@report_user_errors
def main(cfg) -> float:
    return train_job(cfg)


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    logging.raiseExceptions = False  # a full disk: one error line, not a traceback per log record
    quiet_background_write_errors()
    run_interruptible(main)
