# Quick start: `make demo` (set up + the main job on the embedded data), `make test` (set up + lint + all tests).
# While editing: `make check` (lint + the tests not marked slow, under 2 minutes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo lint check test bench reproduce clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

demo: $(STAMP)  ## reproduce mnist_scratch's report on the embedded data (offline, a few minutes)
	$(PY) reproduce.py mnist_scratch --quick

lint: $(STAMP)  ## ruff, configured in pyproject.toml
	$(PY) -m ruff check .

check: lint  ## the quick loop: lint + every test not marked slow (pytest.ini), one worker per core
	$(PY) -m pytest -q -n auto -m "not slow"

test: lint  ## what CI runs: lint + the whole test suite (no network, no GPU), one worker per core
	$(PY) -m pytest -q -n auto

bench: $(STAMP)  ## side-by-side speed ratios
	$(PY) bench/mnist_scratch_epoch.py
	$(PY) bench/scratch_conv.py
	$(PY) bench/kd_cifar10_step.py
	$(PY) bench/resnet_norms_norms.py
	$(PY) bench/cpu_threads.py

reproduce: $(STAMP)  ## every report on real data when present (set DATA_ROOT)
	$(PY) reproduce.py --all --data-root $(or $(DATA_ROOT),data)

clean:  ## scratch only: smoke and --quick runs and reports, pytest's cache. Real runs (runs/<assignment>/, runs/reproduce/: hours of training) and the committed reports/ are kept; delete those by hand
	rm -rf runs/smoke runs/reproduce-quick runs/reproduce-smoke reports/quick reports/smoke .pytest_cache
