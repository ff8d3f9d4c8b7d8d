# effsr: two commands. `make test` (everything) and `make demo` (the main job).
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
EFFSR_ASSETS ?= $(abspath ../shared)
export EFFSR_ASSETS
EFFSR_WEIGHTS_DIR ?= $(EFFSR_ASSETS)/weights
export EFFSR_WEIGHTS_DIR
# The CPU build of PyTorch lies on this machine's disk; an unpinned torch would pull a multi-GB CUDA build.
# Elsewhere: `make test TORCH_INDEX=https://download.pytorch.org/whl/cpu` (CPU wheels) or TORCH_SPEC=torch (CUDA).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: venv test demo lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(VPY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VPY) -m pytest -q

demo: venv
	$(VPY) -m effsr.demo

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache demo_out
