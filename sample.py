"""Sample from a checkpoint: python sample.py [ckpt=<path>] prompt="ROMEO:" max_new_tokens=500."""

import hydra

from shakegpt.errors import report_user_errors
from shakegpt.sampling import load_model, newest_checkpoint, write_samples


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
@report_user_errors
def main(cfg) -> None:
    model = load_model(cfg.ckpt or newest_checkpoint())
    write_samples(model, cfg.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.seed, cfg.num_samples)


if __name__ == "__main__":
    main()
