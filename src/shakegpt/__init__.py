"""shakegpt: the "build a GPT from scratch" lecture as a training lab on Tiny Shakespeare.

From Python or a notebook (shakegpt.lab; importing shakegpt loads nothing heavy until first use):

    import shakegpt
    run = shakegpt.train("model=v6", "trainer.max_steps=500")   # train.py's overrides
    print(run.sample(prompt="ROMEO:", max_new_tokens=200))
    run.plot()                                                  # train and val loss by step
    shakegpt.compare(run, shakegpt.load_run("outputs/<date>/<time>-v5")).plot()
"""

import sys

# `python -m shakegpt.<command>` imports this package first, while sys.argv[0] is "-m" (as the
# interpreter documents): from here Ctrl-C during the command's imports (torch and Lightning take
# seconds) is one line. Each command's __main__ block says when its imports are done.
if sys.argv[:1] == ["-m"]:
    from shakegpt.common.errors import exit_quietly_on_ctrl_c

    exit_quietly_on_ctrl_c()

# The public API, loaded from shakegpt.lab on first use: torch and Lightning take seconds to import.
LAB = ("Comparison", "Run", "TrainingInterrupted", "compare", "load_run", "sweep", "train")
__all__ = list(LAB)


def __getattr__(name: str):
    if name in LAB:
        from shakegpt import lab

        return getattr(lab, name)
    raise AttributeError(f"module 'shakegpt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *LAB])
