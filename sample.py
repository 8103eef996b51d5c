"""Sample from a checkpoint: python sample.py [ckpt=<path>] prompt=ROMEO: max_new_tokens=500 ...

The prompt is taken as typed (commas, quotes, any letter); `python sample.py --help` lists the options.
"""

import sys

import hydra

from shakegpt.errors import report_user_errors
from shakegpt.prompt import read_prompt, split_prompt_args
from shakegpt.sampling import load_model, newest_checkpoint, pick_device, write_samples

PROMPT_ARGS = (None, None)  # (prompt=, prompt_file=) as typed, taken out of argv before Hydra reads it


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
@report_user_errors
def main(cfg) -> None:
    prompt = read_prompt(*PROMPT_ARGS)
    device = pick_device(cfg.device)
    model = load_model(cfg.ckpt or newest_checkpoint()).to(device)
    write_samples(model, prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.seed, cfg.num_samples)


if __name__ == "__main__":
    sys.argv, *PROMPT_ARGS = split_prompt_args(sys.argv)
    main()
