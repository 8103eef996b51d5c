"""The package runs where Unix's modules do not exist, and installs everything it imports."""

import ast
import re
import subprocess
import sys
from importlib.metadata import packages_distributions

import pytest

from tests.helpers import ROOT

# fcntl refused as Windows refuses it (no such module); then the data, models and sampling
# packages are imported and a corpus is prepared through the cache and its lock.
WITHOUT_FCNTL = """
import sys, warnings

class NoFcntl:
    def find_spec(self, name, path=None, target=None):
        if name == "fcntl":
            raise ModuleNotFoundError("No module named 'fcntl'", name="fcntl")

sys.meta_path.insert(0, NoFcntl())
warnings.simplefilter("ignore")  # filelock says it falls back to its portable lock
import shakegpt.data, shakegpt.models, shakegpt.sampling
from shakegpt.data import prepare_corpus

prepared = prepare_corpus(sys.argv[1], "char", sys.argv[2])
assert "fcntl" not in sys.modules, "fcntl was imported"
print(prepared.tokenizer.decode(prepared.tokens.tolist()), end="")
"""


def test_the_packages_import_and_prepare_a_corpus_without_fcntl(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be\n" * 20)
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_FCNTL, str(corpus), str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.endswith("once per corpus\n" + corpus.read_text())


def imported_modules(path) -> set[str]:
    """The top-level names of the absolute imports in a Python file, wherever they stand."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements: list[str]) -> set[str]:
    return {normalized(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in requirements}


# src may import an optional extra's package where that extra is what a feature needs (IPython once
# a notebook runs it; a PostgreSQL driver for such a study); the tests, what `.[test]` installs.
@pytest.mark.parametrize("where, extras", [("src", ["notebook", "cluster"]), ("tests", ["test"])])
def test_every_import_is_a_declared_dependency(where, extras):
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    allowed = declared(project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]])
    files = list((ROOT / where).rglob("*.py")) + (list(ROOT.glob("*.py")) if where == "src" else [])
    first_party = {"shakegpt", "hydra_plugins", "tests"}
    distributions = packages_distributions()
    missing = {
        module: distributions.get(module)
        for path in files
        for module in imported_modules(path) - set(sys.stdlib_module_names) - first_party
        if not allowed & {normalized(d) for d in distributions.get(module, [module])}
    }
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"
