# Quick start:  make run   (sets up .venv on first use, then runs the ladder on configs/seg.yaml)
#               make test  (sets up .venv on first use, then runs the whole test suite)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/seg.yaml

.PHONY: run test lint format clean browser postgres

# CPU-only torch on a machine without a GPU (no CUDA libraries: a fraction of the download):
#   make run TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

$(BIN)/dlsteps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/pip install --quiet torch torchvision --index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e '.[dev,timm,hf,postgres,lightning]'
	touch $(BIN)/dlsteps

run: $(BIN)/dlsteps
	$(BIN)/dlsteps run $(CONFIG)

test: $(BIN)/dlsteps
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: $(BIN)/dlsteps
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/lint-imports

format: $(BIN)/dlsteps
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

# Chromium from the system's packages, for the test that opens report.html in a real
# headless browser (skipped, with the reason, where Chromium is missing). CI runs this.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: could not install chromium; the report browser test will be skipped"

# PostgreSQL from the system's packages, for the test that runs two ablation workers on one
# study in a real database (skipped, with the reason, where no server can start). CI runs this.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; } || \
	  echo "warning: could not install postgresql; the shared-study database test will be skipped"

clean:
	rm -rf $(VENV) runs/*-*/
