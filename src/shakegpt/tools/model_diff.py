"""What one version of the model has that another has not, module by module.

    python -m shakegpt.tools.model_diff v5 v6    # - removed, + added, ~ changed modules
    python -m shakegpt.tools.model_diff v7       # every module of v7

Each version is built at the sizes of conf/model/<version>.yaml; Hydra overrides after the
versions apply to both (model.n_layer=1). A line is a submodule's name, the prefix of its
weights in the state_dict, and what print(model) says of it without its children. A class of
this project names its file: `~ body.0-2  v5.Block() -> v6.Block()` says the block's forward is
new code. Blocks that say the same show once, as body.0-2.
"""

import argparse
import re

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from shakegpt.common.errors import exit_quietly_on_ctrl_c, report_user_errors
from shakegpt.common.paths import CONFIG_DIR
from shakegpt.data import CharTokenizer, read_corpus

VERSIONS = sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))


def describe(module: nn.Module) -> str:
    kind = type(module)
    file = kind.__module__.rpartition(".")[2] + "." if kind.__module__.startswith("shakegpt.") else ""
    return f"{file}{kind.__name__}({module.extra_repr()})"


def layout(model: nn.Module) -> dict[str, str]:
    """{name: description} of every submodule, in print(model)'s order; the model itself left out."""
    return {name: describe(module) for name, module in model.named_modules() if name}


def merge_blocks(modules: dict[str, str]) -> dict[str, str]:
    """body.0.sa ... body.5.sa, when all say the same, as one entry: body.0-5.sa."""
    groups: dict[tuple[str, str], list[int]] = {}
    for name, description in modules.items():
        block = re.match(r"body\.(\d+)(?=\.|$)", name)
        pattern = "body.#" + name[block.end() :] if block else name
        groups.setdefault((pattern, description), []).append(int(block[1]) if block else 0)
    return {pattern.replace("#", span(numbers)): description for (pattern, description), numbers in groups.items()}


def span(numbers: list[int]) -> str:
    if len(numbers) > 1 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}-{numbers[-1]}"
    return ",".join(map(str, numbers))


def changes(old: dict[str, str], new: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """{name: (old description or None, new description or None)} for every name that differs:
    the removed ones first, then the rest in the new model's order."""
    names = [*(name for name in old if name not in new), *new]
    return {name: (old.get(name), new.get(name)) for name in names if old.get(name) != new.get(name)}


def build(version: str, overrides: list[str] = ()) -> nn.Module:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={version}", *overrides])
    return instantiate(cfg.model, vocab=CharTokenizer.from_text(read_corpus(None)).chars, _convert_="all")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        "python -m shakegpt.tools.model_diff", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("args", nargs="+", metavar="VERSION", help="one version or two, then Hydra overrides for both")
    return parser


@report_user_errors  # a user error in one line; `| head` ends it quietly
def main(argv: list[str] | None = None) -> None:
    parser = make_parser()
    args = parser.parse_args(argv).args
    versions, overrides = [a for a in args if "=" not in a], [a for a in args if "=" in a]
    if not 1 <= len(versions) <= 2 or not set(versions) <= set(VERSIONS):
        parser.error(f"give one or two of {', '.join(VERSIONS)}, then any overrides (model.n_layer=1)")
    models = [build(version, overrides) for version in versions]
    counts = " -> ".join(f"{v} {sum(p.numel() for p in m.parameters()):,}" for v, m in zip(versions, models))
    print(f"{counts} parameters, at the sizes of conf/model/{'.yaml, '.join(versions)}.yaml", *overrides)
    modules = [merge_blocks(layout(model)) for model in models]
    if len(modules) == 1:
        for name, description in modules[0].items():
            print(f"  {name:<22} {description}")
        return
    marks = {(True, False): "-", (False, True): "+", (True, True): "~"}
    if not changes(*modules):
        print(f"  the same modules: {versions[1]} changes the initialisation or the forward pass (its docstring says which)")
    for name, (old, new) in changes(*modules).items():
        text = f"{old} -> {new}" if old and new else old or new
        print(f"{marks[old is not None, new is not None]} {name:<22} {text}")


if __name__ == "__main__":
    exit_quietly_on_ctrl_c(imports_done=True)
    main()
