# Quick start:  make run   (sets up .venv on first use, then runs the ladder on configs/seg.yaml)
#               make test  (sets up .venv on first use, then runs the whole test suite)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/seg.yaml

.PHONY: run test lint format clean

$(BIN)/dlsteps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/dlsteps

run: $(BIN)/dlsteps
	$(BIN)/dlsteps run $(CONFIG)

test: $(BIN)/dlsteps
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: $(BIN)/dlsteps
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

format: $(BIN)/dlsteps
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

clean:
	rm -rf $(VENV) runs/*-*/
