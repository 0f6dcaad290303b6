# Two commands on a fresh clone: `make demo` and `make test`. Every target bootstraps .venv itself.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help venv demo demo-down test test-fast test-postgres test-ha test-ansible test-chaos lint bench bench-ha clean

help:
	@echo "make demo        local Prefect server + emulated fleet from inventory/demo.yaml + a real batch"
	@echo "make test        lint, import contracts and the test suite (what CI runs)"
	@echo "make test-fast   lint and the unit tests (about a minute): the inner loop"
	@echo "make test-ansible  ansible-lint and a real rollout to fake Pis"
	@echo "make test-ha     fleet server up --replicas 2 (PostgreSQL, Redis, HAProxy) with a real fleet"
	@echo "make bench       benchmarks -> bench/results/*.json"
	@echo "make bench-ha    50 resorts on several servers -> bench/results/ha.json"
	@echo "make lint        ruff, mypy and the import-linter contract"

# (Re)install when the venv is missing or pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,ansible]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict resort_common
	$(BIN)/mypy resort_common fleet flows device_agent
	$(BIN)/lint-imports

test: lint
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# No Prefect server, no agents, no slow tests: what to run after every edit.
test-fast: lint
	$(BIN)/python -m pytest -m "not orchestration and not slow and not chaos and not ansible" $(PYTEST_ARGS)

# The orchestration tests on the shared server fixture, against PostgreSQL, and the plate
# registry's tests on a PostgreSQL database of their own. The chaos suite, the demo and the browser
# tests start their own (SQLite) servers, so they are not repeated here.
test-postgres: $(STAMP)
	bash scripts/with-postgres.sh $(BIN)/python -m pytest -m "(orchestration or registry) and not chaos and not slow and not browser and not ha" $(PYTEST_ARGS)

# Several servers behind a load balancer (`fleet server up --replicas 2`); the `ha` marker is left
# out of every other selection (pyproject's addopts).
test-ha: $(STAMP)
	$(BIN)/python -m pytest -m ha $(PYTEST_ARGS)

test-ansible: $(STAMP)
	bash ansible/tests/run.sh

test-chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m fleet.demo --inventory inventory/demo.yaml

demo-down: $(STAMP)
	$(BIN)/python -m fleet.demo --down

bench: $(STAMP)
	$(BIN)/python -m bench

# 50 resorts through `fleet server up --replicas 2` -> bench/results/ha.json (about 10 minutes).
bench-ha: $(STAMP)
	$(BIN)/python -m bench ha

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .fleet-state
