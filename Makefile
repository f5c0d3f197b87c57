# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
# torch is installed first, pinned, so pip never resolves an unpinned (multi-GB CUDA) build.
# On a GPU box: make demo TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
# timm's metadata requires torchvision, which pip would resolve to a build for another torch (or a
# CUDA torch with it); installed --no-deps, timm imports with unetkit's stand-in for the few
# torchvision names it binds (models/timm_encoder.py). Its real needs: huggingface_hub (a base
# dependency), pyyaml and safetensors. A later pip may note "timm requires torchvision": expected.
TIMM_SPEC ?= timm==1.0.31
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-browser bench bench-gpu lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamp files make re-runs instant; they depend on pyproject.toml, so new dependencies install.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(TIMM_SPEC)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/unetkit demo --out runs/demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

# Not part of `make test`: renders a run report in headless Chromium (Debian's, installed if missing).
test-browser: $(VENV)/.installed
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)
	$(BIN)/python tools/report_in_browser.py

# Benchmarks: throughput (~4 min), quality per minute (seed, fast, best x 2 folds x 2 seeds x 10 min on TGS,
# about 2.5 h; benchmarks/quality.py --budgets 10,30 for the full table), then large-image
# inference against MONAI and peak memory on a 20000 x 20000 TIFF (~15 min). MONAI is installed
# for the comparison only, pinned; with torch already installed pip adds nothing else.
MONAI_SPEC ?= monai==1.6.1

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/train_throughput.py
	rm -rf runs/quality
	$(BIN)/python benchmarks/quality.py --budgets 10 --out runs/quality
	$(BIN)/pip install --quiet $(MONAI_SPEC)
	$(BIN)/python benchmarks/inference.py
	@if $(BIN)/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then $(MAKE) bench-gpu; \
	else echo "gpu_throughput: skipped (no CUDA GPU; make bench-gpu runs it on the CPU too)"; fi

# The GPU fast path against fp32 eager (training 256x256 batch 32, and inference); meant for a CUDA GPU.
bench-gpu: $(VENV)/.installed
	$(BIN)/python benchmarks/gpu_throughput.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks tools

clean:
	rm -rf runs .pytest_cache
