# The project's commands. Each creates the virtual environment it needs on first use.
#   make demo    a real server over the example prompts, and the SDK walking through it
#   make test    the test suite, in parallel (JOBS=auto: one worker per core; JOBS=0: serial)
#   make check   formatting, lint, strict typing, and the tests with branch coverage
#   make bench   the benchmarks (ratios against baselines measured in the same run)
#   make soak    60 s of mixed load while commits land (SOAK_SECONDS to change)
#   make dist    the wheel and sdist in dist/, checked with twine

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
JOBS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(JOBS)

# What each command needs installed: the demo only the server extra (a quick first run),
# everything else the development toolchain, which includes the server extra.
SERVER_STAMP := $(VENV)/.installed-server
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test check bench soak dist clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(SERVER_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(SERVER_STAMP)

demo: $(SERVER_STAMP)
	$(BIN)/promptory demo

test: $(DEV_STAMP)
	$(PYTEST)

check: $(DEV_STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy --strict src
	$(PYTEST) --cov=promptory --cov-branch --cov-report=term

bench: $(DEV_STAMP)
	$(BIN)/python -m benchmarks

soak: $(DEV_STAMP)
	$(BIN)/python -m pytest tests/soak -m soak -s --timeout=900

dist: $(DEV_STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov dist build
