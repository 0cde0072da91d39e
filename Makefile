# Two commands on a fresh machine: `make run` (the app locally) and `make test` (every test).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
RUNTIME_VENV ?= .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/.installed
# The offline infra checkers (checkov, pycep-parser, azure-functions-doctor) in their own venv: their dependencies
# would clash with ours. tests/artifacts/test_infra.py runs them from there.
IAC_PYTHON ?= python3.11
IAC_VENV ?= .venv-iac
IAC_STAMP := $(IAC_VENV)/.installed

.PHONY: install run test bench clean runtime-venv iac-tools

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt requirements-cli.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .  # the arr-sessions command (arr_cli)
	touch $@

iac-tools: $(IAC_STAMP)

$(IAC_STAMP): infra/requirements-check.txt
	$(IAC_PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r infra/requirements-check.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Python 3.13 with Microsoft's worker runtime, for tests/integration/test_real_runtime.py (fails without 3.13).
runtime-venv: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): requirements.txt tests/runtime/requirements.txt tests/runtime/functionrpc.txt \
		tests/runtime/build_venv.py
	$(PYTHON) tests/runtime/build_venv.py $(RUNTIME_VENV)

run: install
	$(PY) -m devhost.stack

# The Power Platform custom connector's definition, generated from the models behind /api/openapi.json;
# tests/artifacts/test_connector.py fails when the committed file is stale.
.PHONY: connector
connector: install
	$(PY) -m blueprints.connector connector/apiDefinition.swagger.json

# With a coverage report of arr_core and blueprints at the end, the functions host's subprocesses included (settings
# in pyproject.toml); `$(PY) -m coverage report -m` afterwards lists the missed lines. No threshold: it informs.
# Debian's chromium for tests/integration/test_dashboard.py (Playwright drives it; no browser is downloaded), and
# tmux, in which tests/integration/test_cli.py watches the CLI's progress display as a person would.
# As root (CI) apt-get runs as is; anyone else is asked for sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
.PHONY: browser
browser:
	@command -v chromium >/dev/null && command -v tmux >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium tmux; }

# What the tests need is set up side by side (pip, npm, apt and the two tool venvs wait on the network, not on each
# other), then every test runs.
test:
	$(MAKE) --no-print-directory -j4 install runtime-venv iac-tools browser
	$(PY) -m pytest -n 2 --dist loadfile --cov --cov-report=term --durations=25

bench: install
	$(PY) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(PY) bench/import_time.py
	$(PY) bench/start_requests.py
	$(PY) bench/nightly_stop.py
	$(PY) bench/cold_start.py
	$(PY) bench/notify_duplicates.py --subscriptions 28 --resolve-seconds 3 --trace
	$(PY) bench/notify_duplicates.py --subscriptions 100 --resolve-seconds 3 --trace
	$(PY) bench/hook_deliveries.py
	$(PY) bench/heartbeats.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache
