PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench setup clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/python -m bot run

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/updates_per_second.py

clean:
	rm -rf $(VENV) data
