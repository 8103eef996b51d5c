"""Every command the README, the guide and docs/cluster.md show still parses: its Hydra overrides resolve
against conf/, its flags against the script's own parser. The docs cannot drift from the code."""

import contextlib
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from shakegpt.sampling.prompt import split_prompt_args
from tests.helpers import ROOT, commands

DOCS = [ROOT / "README.md", ROOT / "docs" / "guide.md", ROOT / "docs" / "cluster.md"]


def shown_commands() -> list[tuple[str, str]]:
    """(doc, command) for each `python ...` line inside the docs' code blocks and backticks."""
    commands = []
    for doc in DOCS:
        if not doc.exists():
            continue
        text = doc.read_text()
        blocks = re.findall(r"```\n(.*?)```", text, re.S) + re.findall(r"`(python [^`]+)`", text)
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip().removeprefix("srun ")  # an sbatch script's command
                if line.startswith(("python ", "torchrun ")):
                    commands.append((doc.name, line))
    return commands


def first_sweep_value(override: str) -> str:
    """compose() takes one value: a=1,2 -> a=1 (the sweep's first point)."""
    key, _, value = override.partition("=")
    if "," in value and not value.startswith(("[", "{", "'", '"')):
        value = value.split(",")[0]
    return f"{key}={value}"


def hydra_overrides(args: list[str]) -> list[str]:
    """The overrides of a command line, without flags (-m, --help) and placeholders."""
    return [first_sweep_value(a) for a in args if not a.startswith("-") and a != "..." and "<" not in a]


COMMANDS = shown_commands()


def entry_point(command: str) -> str:
    """What a shown command runs: train.py, or shakegpt.evaluate for `python -m shakegpt.evaluate`."""
    return next(a for a in shlex.split(command) if a.endswith(".py") or a.startswith("shakegpt."))


def test_the_docs_show_every_command():
    assert {entry_point(command) for _, command in COMMANDS} == set(commands())


@pytest.mark.parametrize("doc, command", COMMANDS, ids=[c for _, c in COMMANDS])
def test_command_parses(doc, command):
    args = shlex.split(command)
    if args[0] == "torchrun":
        args = ["python", *args[next(i for i, a in enumerate(args) if a.endswith(".py")) :]]
    script, rest = args[1], args[2:]
    if script == "sample.py":  # the prompt is taken out of argv before Hydra sees it
        rest = split_prompt_args([script, *rest])[0][1:]
    if script in ("train.py", "sample.py"):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            overrides = hydra_overrides(rest)
            cfg = compose("config" if script == "train.py" else "sample", overrides, return_hydra_config=True)
        choices = cfg.hydra.runtime.choices
        for key, _, value in (o.partition("=") for o in overrides):  # each group picked is the one composed
            if key in choices:
                assert choices[key] == value, (key, choices[key])
    elif script == "report.py":
        import runpy

        parser = runpy.run_path(str(ROOT / "report.py"))["make_parser"]()
        parser.parse_args([a if "<" not in a else "." for a in rest])
    elif script == "-m" and rest[0] in ("shakegpt.evaluate", "shakegpt.attention"):  # key=value options, as sample.py's
        __import__(rest[0], fromlist=["parse_options"]).parse_options(rest[1:])
    elif script == "-m":
        module = __import__(rest[0], fromlist=["make_parser"])
        module.make_parser().parse_args(rest[1:])
    else:
        pytest.fail(f"{doc} shows a command this check does not know: {command}")


@pytest.mark.parametrize("tool", ["reproduce", "bench", "cpu_race", "gpu_race", "beyond", "speedrun", "video_fixes"])
def test_each_tool_s_docstring_names_the_file_it_writes(tool):
    module = __import__(f"shakegpt.tools.{tool}", fromlist=["make_parser"])
    written = module.make_parser().get_default("out")
    assert f"docs/{written.name}" in module.__doc__


def test_the_progression_figure_is_written_whole(trained_run, tmp_path, monkeypatch):
    """A kill while saving leaves the previous figure, not half of one, and no stray file."""
    import io

    from matplotlib.figure import Figure

    from shakegpt.tools import reproduce

    rows = {"v6": {"runs": [{"run_dir": trained_run}], "val_mean": 2.0}}
    out = tmp_path / "progression.png"
    out.write_bytes(b"the previous figure")
    savefig = Figure.savefig

    def killed_halfway(figure, target, **kwargs):  # writes the first half of the PNG, then Ctrl-C
        png = io.BytesIO()
        savefig(figure, png, **kwargs)
        with open(target, "wb") if isinstance(target, (str, Path)) else contextlib.nullcontext(target) as f:
            f.write(png.getvalue()[: len(png.getvalue()) // 2])
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Figure, "savefig", killed_halfway)
        with pytest.raises(KeyboardInterrupt):
            reproduce.progression_figure(rows, out, {"v7": None})
    assert out.read_bytes() == b"the previous figure"
    assert list(tmp_path.iterdir()) == [out]
    reproduce.progression_figure(rows, out, {"v7": None})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.read_bytes()[-8:-4] == b"IEND"  # whole


def test_v7_s_rows_are_read_from_their_gpu_records_and_say_not_measured_without_one(tmp_path):
    import json

    from shakegpt.tools import records, reproduce

    record = {"final_val_loss": 1.5012, "best_val_loss": 1.4801, "final_train_loss": 0.9, "steps": 5000,
              "fit_seconds": 101.2, "device": "NVIDIA H200 x1", "date": "2026-12-04", "full_val": 1.49,
              "command": "python train.py model=v7 trainer=gpu", "curve": {"500": 1.9, "5000": 1.5012}}
    (tmp_path / "gpu_v7.json").write_text(json.dumps(record))
    found = records.gpu_v7_records(tmp_path)
    assert found == {"v7": record, "v7_repository": None}
    row = reproduce.v7_row("v7", found["v7"])
    assert row.startswith("| v7, the video's code | 10,788,929 | 1.4873 (train 1.0763) ")
    assert "| 1.5012 (one run) | 1.5012 (best 1.4801) | 0.9000 | yes | 5,000 | 101 s | NVIDIA H200 x1, 2026-12-04 |" in row
    assert reproduce.v7_row("v7_repository", None).endswith("| not measured yet | needs a GPU |")
    (tmp_path / "gpu_v7.json").write_text("[1, 2]")  # not a record: no row
    assert records.gpu_v7_records(tmp_path)["v7"] is None


def test_the_committed_v7_record_is_the_h200_run_of_gpu_race_md():
    """Until a GPU reruns it, v7's repository row is the 2026-11-30 run gpu_race.md reports."""
    from shakegpt.tools.records import gpu_v7_records

    record = gpu_v7_records()["v7_repository"]
    gpu_race = (ROOT / "docs" / "gpu_race.md").read_text()
    name = "v7" if "| v7_repository |" not in gpu_race else "v7_repository"  # the name before the video's row existed
    assert f"| {name} | 1.4873 | val {record['best_val_loss']:.4f} at step {record['best_step']}" in gpu_race
    assert f"| {record['final_val_loss']:.4f} ({record['final_train_loss']:.4f}) | {record['full_val']:.4f} |" in gpu_race


# What the docs cite from the source, checked (README.md and every docs/*.md page):
# - every path starting src/ exists, as a file or a directory;
# - every backticked dotted name starting shakegpt. or hydra_plugins. imports as a module, or is
#   an attribute of the longest prefix that does;
# - in a paragraph that cites a src/ path, every backticked bare Python name is defined somewhere
#   under src/ (def, class, a module-level assignment or self.<name> =) or is a key in conf/ (a
#   setting, such as `block_size`).
CITING_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SRC_PATH = re.compile(r"(?<![\w/.-])src/[\w./-]*[\w/]")
DOTTED_NAME = re.compile(r"`((?:shakegpt|hydra_plugins)(?:\.\w+)+)(?:\(\))?`")
BARE_NAME = re.compile(r"`([A-Za-z_]\w*)(?:\(\))?`")


def paragraphs(text: str) -> list[str]:
    return re.split(r"\n\s*\n", text)


def citation_problems(text: str, src_text: str, conf_keys: set[str]) -> list[str]:
    """What a doc's text cites from src/ that does not exist (the checks listed above)."""
    import importlib

    problems = [f"no such path {path}" for path in SRC_PATH.findall(text) if not (ROOT / path).exists()]
    for dotted in DOTTED_NAME.findall(text):
        parts, found = dotted.split("."), None
        for cut in range(len(parts), 0, -1):
            try:
                found = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute, None)
        if found is None:
            problems.append(f"no such name {dotted}")
    for paragraph in paragraphs(text):
        if not SRC_PATH.search(paragraph):
            continue
        for name in BARE_NAME.findall(paragraph):
            defined = rf"^\s*(def|class)\s+{name}\b|^{name}\s*[:=]|self\.{name}\s*[:=]"
            if name not in conf_keys and not re.search(defined, src_text, re.M):
                problems.append(f"`{name}` is not defined under src/ (in: {SRC_PATH.findall(paragraph)})")
    return problems


def source_and_settings() -> tuple[str, set[str]]:
    src_text = "\n".join(path.read_text() for path in sorted((ROOT / "src").rglob("*.py")))
    conf_text = "\n".join(path.read_text() for path in sorted((ROOT / "conf").rglob("*.yaml")))
    return src_text, set(re.findall(r"(?:^\s*|[{,]\s*)([A-Za-z_]\w*):", conf_text, re.M))


@pytest.mark.parametrize("doc", CITING_DOCS, ids=lambda path: path.name)
def test_what_the_docs_cite_from_src_exists(doc):
    assert citation_problems(doc.read_text(), *source_and_settings()) == []


def test_a_citation_of_a_gone_path_or_name_is_found():
    src_text, conf_keys = source_and_settings()
    bad = ("`src/shakegpt/data.py` builds the vocabulary (`Vocabulary`), `random_windows` draws\n"
           "batches of `block_size`; `shakegpt.data.Vocabulary` and `shakegpt.nothing`.")
    assert citation_problems(bad, src_text, conf_keys) == [
        "no such path src/shakegpt/data.py", "no such name shakegpt.data.Vocabulary", "no such name shakegpt.nothing",
        "`Vocabulary` is not defined under src/ (in: ['src/shakegpt/data.py'])",
    ]
