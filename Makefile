# calibrate — every target creates and uses the project virtualenv in .venv/ when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT := out/demo

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/calibrate sweep sample_logs/ --tiers sample_logs/tiers.yaml --rules sample_logs/rules.yaml \
		--high-stakes contract_interpretation --high-stakes billing_dispute --out $(DEMO_OUT)
	@echo "Outputs are in $(DEMO_OUT)/: routing.yaml frontier.csv summary.json report.md report.html and the charts (*.svg)"

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check calibrate tests bench
	$(VENV)/bin/ruff format --check calibrate tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/run.py
	$(PY) bench/replay.py

clean:
	rm -rf out .calibrate bench/data
