# Every target sets itself up: a venv in .venv with hakv installed editable.
# The fastest CPython >= 3.11 here (tools/pick-python); evaluated only when a venv is made.
PY ?= $(shell sh tools/pick-python)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test unit lint demo demo-down bench bench-scale chaos clean

$(STAMP): pyproject.toml
	$(PY) -m venv --clear $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@# optional: the chaos delay fault (needs libnetfilter-queue-dev and a C compiler)
	$(BIN)/pip install -q -e '.[dev,chaos]' >$(VENV)/chaos-extra.log 2>&1 || \
	  echo "note: NetfilterQueue did not build (see $(VENV)/chaos-extra.log); chaos delay faults will be skipped. Fix: apt-get install -y libnetfilter-queue-dev build-essential python3-dev"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check hakv tests chaos bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

test: lint $(STAMP)
	$(BIN)/pytest -q

DEMO_DIR ?= /tmp/hakv-demo
demo: $(STAMP)
	$(BIN)/python -m hakv.cli.demo --dir $(DEMO_DIR)

demo-down: $(STAMP)
	$(BIN)/hakv local down --dir $(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/python -m bench.throughput --repeat 3

# N real node processes for N = 9, 27, 45, 99 (bench/scale.py; SCALE_ARGS="--nodes 9,27" to
# choose); writes docs/img/scale.png and docs/scale.json.
SCALE_ARGS ?=
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale --json docs/scale.json $(SCALE_ARGS)

chaos: $(STAMP)
	$(BIN)/python -m chaos.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
