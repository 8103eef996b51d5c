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
	touch $@

train: setup
	$(BIN)/python train.py $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

reproduce: setup
	$(BIN)/python -m shakegpt.reproduce $(ARGS)

clean:
	rm -rf outputs multirun runs lightning_logs .pytest_cache
