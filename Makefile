# `make train` and `make test` work on a fresh clone: each creates .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup train test reproduce clean

setup: $(VENV)/.installed

# Re-install only when the dependency list changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# An environment made before the project's own Optuna sweeper still has the old plugin,
	# which claims hydra/sweeper=optuna too.
	$(BIN)/pip uninstall --quiet --yes hydra-optuna-sweeper 2>/dev/null || true
	touch $@

train: setup
	$(BIN)/python train.py $(ARGS)

# One pytest worker per core: the suite is mostly separate training processes.
test: setup
	$(BIN)/python -m pytest -n auto --durations=20 $(ARGS)

reproduce: setup
	$(BIN)/python -m shakegpt.tools.reproduce $(ARGS)

clean:
	rm -rf outputs multirun runs lightning_logs .pytest_cache
