# The project's commands. Each creates the virtual environment it needs on first use.
#   make demo    a real server over the example prompts, and the SDK walking through it
#   make test    the test suite
#   make check   formatting, lint, strict typing, and the tests with branch coverage
#   make bench   the benchmarks (ratios against baselines measured in the same run)
#   make soak    60 s of mixed load while commits land (SOAK_SECONDS to change)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/promptory demo

test: $(STAMP)
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy --strict src
	$(BIN)/python -m pytest --cov=promptory --cov-branch --cov-report=term

bench: $(STAMP)
	$(BIN)/python -m benchmarks

soak: $(STAMP)
	$(BIN)/python -m pytest tests/soak -m soak -s --timeout=900

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov dist build
