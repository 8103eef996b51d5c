"""Sample from a checkpoint: python sample.py [ckpt=<path>] prompt=ROMEO: max_new_tokens=500 ...

The prompt is taken as typed (commas, quotes, any letter); `python sample.py --help` lists the options.
"""

from shakegpt.common.errors import exit_quietly_on_ctrl_c

exit_quietly_on_ctrl_c()  # first: Ctrl-C while the imports below run (seconds) is one line

import sys
from pathlib import Path

import hydra
from omegaconf import OmegaConf

from shakegpt.common.errors import report_user_errors
from shakegpt.bookkeeping.checkpoints import load_model
from shakegpt.sampling.generate import check_kv_cache, newest_checkpoint, pick_device, use_threads, write_samples
from shakegpt.sampling.prompt import check_options, read_prompt, split_prompt_args

# (prompt=, prompt_file=) as typed, taken out of argv before Hydra reads it; when either is typed
# the pair replaces conf/sample.yaml's.
PROMPT_ARGS = (None, None)
CONFIG = Path(__file__).parent / "conf" / "sample.yaml"


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
@report_user_errors
def main(cfg) -> None:
    typed = any(arg is not None for arg in PROMPT_ARGS)
    prompt = read_prompt(*(PROMPT_ARGS if typed else (cfg.prompt, cfg.prompt_file)))
    device = pick_device(cfg.device)
    check_kv_cache(cfg.kv_cache)
    model = load_model(cfg.ckpt or newest_checkpoint()).to(device)
    use_threads(model, cfg.threads)
    write_samples(model, prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.seed, cfg.num_samples,
                  kv_cache=cfg.kv_cache)


@report_user_errors
def take_prompt_args(argv: list[str]) -> tuple[list[str], str | None, str | None]:
    rest, prompt, prompt_file = split_prompt_args(argv)
    check_options(rest[1:], set(OmegaConf.load(CONFIG).keys()) - {"defaults", "hydra"})
    return rest, prompt, prompt_file


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    sys.argv, *PROMPT_ARGS = take_prompt_args(sys.argv)
    main()
