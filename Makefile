# Two commands on a fresh machine with Python 3.11 and make:
#   make run   - set up .venv and start the console channel
#   make test  - set up .venv, then lint, type check and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m bots.console

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench.core_overhead
	$(BIN)/python -m bench.many_channels
	$(BIN)/python -m bench.slack_latency
	$(BIN)/python -m bench.slack_load
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.search_latency
	dpkg -s python3-doc >/dev/null 2>&1 || (apt-get update && apt-get install -y python3-doc)
	$(BIN)/python -m bench.retrieval

clean:
	rm -rf $(VENV) build *.egg-info
