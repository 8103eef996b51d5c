"""Where the project's own files are: the checkout this package runs from."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = PROJECT_ROOT / "conf"
DOCS_DIR = PROJECT_ROOT / "docs"
