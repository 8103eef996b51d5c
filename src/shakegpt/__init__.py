"""shakegpt: the "build a GPT from scratch" lecture as a training lab on Tiny Shakespeare.

From Python or a notebook (shakegpt.lab; importing shakegpt loads nothing heavy until first use):

    import shakegpt
    run = shakegpt.train("model=v6", "trainer.max_steps=500")   # train.py's overrides
    print(run.sample(prompt="ROMEO:", max_new_tokens=200))
    run.plot()                                                  # train and val loss by step
    shakegpt.compare(run, shakegpt.load_run("outputs/<date>/<time>-v5")).plot()
"""

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
