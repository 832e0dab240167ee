# calibrate — every target creates and uses the project virtualenv in .venv/ when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT := out/demo

.PHONY: install demo test test-fast test-gateways lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,spark]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/calibrate sweep sample_logs/ --tiers sample_logs/tiers.yaml --rules sample_logs/rules.yaml \
		--high-stakes contract_interpretation --high-stakes billing_dispute --out $(DEMO_OUT)
	@echo "Outputs are in $(DEMO_OUT)/: routing.yaml frontier.csv summary.json report.md report.html and the charts (*.svg)"

test: $(STAMP)
	$(PY) -m pytest

# The quick subset: everything but the tests marked `e2e` (whole sweeps, simulations, subprocesses,
# the browser). Mark a new test `@pytest.mark.e2e` when it runs a whole sweep or takes seconds.
test-fast: $(STAMP)
	$(PY) -m pytest -m 'not slow and not gateways and not e2e'

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

# The real gateways `calibrate export` writes for (tests/test_export_gateways.py, marker `gateways`),
# and the LiteLLM proxy whose payload log `calibrate ingest` reads (tests/test_litellm_proxy_ingest.py):
# vllm-sr from PyPI into the venv, the Portkey gateway from npm and LiteLLM's proxy in its own venv,
# both under .gateways/ (gitignored).
GATEWAYS := .gateways
test-gateways: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,spark,gateways]'
	test -f $(GATEWAYS)/node_modules/@portkey-ai/gateway/package.json || \
		npm install --prefix $(GATEWAYS) --no-audit --no-fund @portkey-ai/gateway@1.15.2
	test -x $(GATEWAYS)/litellm-venv/bin/litellm || ( $(PYTHON) -m venv $(GATEWAYS)/litellm-venv && \
		$(GATEWAYS)/litellm-venv/bin/pip install --quiet 'litellm[proxy]==1.108.7' )
	$(PY) -m pytest -m gateways tests/test_export_gateways.py tests/test_litellm_proxy_ingest.py
