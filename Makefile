# Every target sets up what it needs itself, so a fresh clone works with one command.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench-world clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fedads needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	touch $(STAMP)

demo: $(STAMP)
	FLWR_TELEMETRY_ENABLED=0 $(VENV)/bin/fedads demo --quick

# pytest exits 5 when it collects no test; that is not a failure of the suite.
# Two workers (pytest-xdist), one test file each at a time: much of the suite waits on Flower,
# Ray and subprocess start-up, so two run in about 15 min what one runs in about 20 (2 cores).
# tests/conftest.py sets the file order (longest first, xdist's re-sort by test count off).
test: $(STAMP)
	FLWR_TELEMETRY_ENABLED=0 $(PY) -m pytest -q -n 2 --dist loadfile; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check fedads tests benchmarks examples

clean:
	rm -rf $(VENV) fedads-out .pytest_cache

bench-world: $(STAMP)
	$(PY) benchmarks/world_scale.py
