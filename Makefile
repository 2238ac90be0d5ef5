# Two-command start: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Both cores: independent tests run in two worker processes (pytest-xdist).
WORKERS ?= 2
# Each test file on one worker (--dist loadscope): its module fixtures are built once.
XDIST  := -n $(WORKERS) --dist loadscope

.PHONY: demo test test-fast lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamp is rebuilt when the dependencies change.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/plato demo

# Everything CI runs: lint, then every test (the slow ones and those needing Ray or SLURM
# included; a service that is not running skips its tests with the reason).
test: $(VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q $(XDIST) --durations=15

# What to run while working: the unit tests, without the slow ones or services (< 3 minutes).
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow and not service"

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
