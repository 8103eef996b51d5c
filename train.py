"""Train one of the lecture's models: python train.py model=v6 [overrides]; -m for sweeps."""

import hydra

from shakegpt.errors import report_user_errors
from shakegpt.run import train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@report_user_errors
def main(cfg) -> float:
    # The return value is what sweepers (e.g. Optuna) minimise.
    return train(cfg)["best_val_loss"]


if __name__ == "__main__":
    main()
