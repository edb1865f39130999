# Quick start: `make demo` runs the whole pipeline on embedded defaults; `make test` passes
# the tests. Both do all their own set-up (venv, packages, services).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo run test test-fast lint bench clean services

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

services:
	bash scripts/ensure-services.sh

demo: $(STAMP)
	$(BIN)/bkcmdb-synchronizer demo $(DEMO_ARGS)

run: $(STAMP)
	$(BIN)/bkcmdb-synchronizer run --config $(or $(CONFIG),examples/standalone.yaml)

test: $(STAMP) services
	set -a; . ./.test-services.env; set +a; $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check reconciler synchronizer tests bench

bench: $(STAMP) services
	$(BIN)/pip install -q py-spy
	set -a; . ./.test-services.env; set +a; $(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .test-services.env build *.egg-info
