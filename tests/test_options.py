"""The name=value commands (sample.py, python -m shakegpt.evaluate, python -m shakegpt.attention)
read their command line alike: --help and -h list every option and exit 0; a misspelt option
or a word that is not name=value is one line naming the options, and exit code 2."""

import pytest
from omegaconf import OmegaConf

from shakegpt import attention, evaluate
from tests.helpers import ROOT, run_cli

SAMPLE_OPTIONS = set(OmegaConf.load(ROOT / "conf" / "sample.yaml")) - {"defaults", "hydra"}
COMMANDS = {  # command as typed -> (its options, how this test runs it: (exit code, stderr, stdout))
    "python sample.py": (SAMPLE_OPTIONS, lambda *args: run_cli("sample.py", *args)),
    "python -m shakegpt.evaluate": (set(evaluate.OPTIONS), evaluate.main),
    "python -m shakegpt.attention": ({*attention.OPTIONS, "prompt", "prompt_file"}, attention.main),
}


def run(command: str, *args: str, capsys) -> tuple[int, str, str]:
    """(exit code, stderr, stdout) of the command given args, in this process."""
    if command == "python sample.py":
        return COMMANDS[command][1](*args)
    code = 0
    try:
        COMMANDS[command][1](list(args))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err, captured.out


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_every_option_and_exits_0(command, flag, capsys):
    code, stderr, stdout = run(command, "ckpt=/no/such.ckpt", flag, capsys=capsys)
    assert (code, stderr) == (0, "")
    assert command in stdout
    for name in COMMANDS[command][0]:
        assert f"\n{name}=" in stdout or f"\n  {name}=" in stdout, name  # a line of its own per option


@pytest.mark.parametrize("command", COMMANDS)
def test_a_misspelt_option_is_one_line_naming_the_options(command, capsys):
    code, stderr, _ = run(command, "ckpt=/no/such.ckpt", "devcie=cpu", capsys=capsys)
    options = ", ".join(sorted(COMMANDS[command][0]))
    assert code == 2
    assert stderr == f"error: unknown option devcie; the options are {options} ({command} --help)\n"


@pytest.mark.parametrize("word", ["cpu", "--device", ""])
@pytest.mark.parametrize("command", ["python -m shakegpt.evaluate", "python -m shakegpt.attention"])
def test_a_word_that_is_not_name_value_is_one_line(command, word, capsys):
    code, stderr, _ = run(command, "ckpt=/no/such.ckpt", word, capsys=capsys)
    assert code == 2
    assert stderr == f"error: expected name=value, got {word!r} ({command} --help)\n"
