# Two commands do all the set-up: `make demo` (train, evaluate, report) and `make test`.
# Both create .venv if absent. torch defaults to the CPU build that lies on this
# disk; GPU users set TORCH (see the README) or install torch into .venv first.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
ifndef RUN
RUN := runs/mnist-$(shell date +%Y%m%d-%H%M%S)
endif

.PHONY: demo test test-fast bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# The report also writes RUN/explorer.html, the offline page to explore the run in a browser
# (`vaelab explore RUN` writes it alone).
demo: $(VENV)/.installed
	$(BIN)/vaelab train --out $(RUN)
	$(BIN)/vaelab eval $(RUN)
	$(BIN)/vaelab report $(RUN)

test: $(VENV)/.installed-dev
	@tools/system-test-deps.sh
	$(BIN)/pytest

test-fast: $(VENV)/.installed-dev
	$(BIN)/pytest -m "not slow"

bench: $(VENV)/.installed
	$(BIN)/python bench/bench_train.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
