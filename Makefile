# Two-command start: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Both cores: independent tests run in two worker processes (pytest-xdist).
WORKERS ?= 2
# Each test file on one worker (--dist loadscope): its module fixtures are built once.
XDIST  := -n $(WORKERS) --dist loadscope

.PHONY: demo test test-fast test-vision lint clean

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

# The vision lane: torchvision and timm need the registry's torch (a CUDA build, which runs on a
# CPU), so they get their own environment, the main constraints with torch swapped for the
# combination whose wheels match; triton (0.9 GB, GPU kernels only) is removed.
VISION := .venv-vision
VISION_PINS := torch==2.14.1 torchvision==0.29.1 timm==1.0.31

$(VISION)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VISION)
	sed '/^torch==/d' constraints.txt > $(VISION)/constraints.txt
	printf '%s\n' $(VISION_PINS) >> $(VISION)/constraints.txt
	$(VISION)/bin/python -m pip install -q --disable-pip-version-check \
		-c $(VISION)/constraints.txt -e '.[dev,vision]'
	$(VISION)/bin/python -m pip uninstall -q -y triton
	touch $@

# Every test that needs torchvision or timm, where they import.
test-vision: $(VISION)/.installed
	$(VISION)/bin/python -m pytest -q $(XDIST) -m vision --durations=10

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) $(VISION) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
