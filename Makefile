# Two commands on a fresh machine with Python 3.11 and make:
#   make run   - set up .venv and start the console channel
#   make test  - set up .venv, then lint, type check and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The code interpreter's sandbox: bubblewrap, and a Python with the data stack that the sandbox's
# unprivileged user can read (the system one where there is one; a Python under /root is not).
SANDBOX := .sandbox
SANDBOX_STAMP := $(SANDBOX)/.installed
SANDBOX_PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo $(PYTHON))
# The versions installed: requirements/*.lock, made from pyproject.toml by `make lock` (runtime: the
# bot's own, which the container installs; dev: those plus the tools of `make test`; sandbox: the
# code interpreter's). `make lock` keeps every pin it can; `make lock-upgrade` takes the newest.
LOCKS := requirements/runtime.lock requirements/dev.lock requirements/sandbox.lock
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --custom-compile-command "make lock"

.PHONY: run test lint typecheck unit bench clean setup sandbox bubblewrap postgres lock lock-upgrade

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) "$$(grep '^pip==' requirements/dev.lock)"  # the locked pip first: it installs the rest
	$(PIP) -r requirements/dev.lock
	$(PIP) --no-deps -e .
	@touch $(STAMP)

lock: $(STAMP)
	@test -x $(BIN)/uv || $(PIP) uv
	$(COMPILE) $(UPGRADE) pyproject.toml -o requirements/runtime.lock
	$(COMPILE) $(UPGRADE) pyproject.toml --extra dev -c requirements/runtime.lock -o requirements/dev.lock
	$(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['sandbox']))" \
	  | $(COMPILE) $(UPGRADE) - -o requirements/sandbox.lock

lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade

bubblewrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq bubblewrap; \
	  else echo "The code interpreter needs bubblewrap: sudo apt-get install bubblewrap (it stays off without it)"; fi; }

$(SANDBOX_STAMP): requirements/sandbox.lock
	@test -x $(SANDBOX)/bin/python || $(SANDBOX_PYTHON) -m venv $(SANDBOX)
	$(SANDBOX)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/sandbox.lock
	@touch $(SANDBOX_STAMP)

sandbox: $(STAMP) bubblewrap $(SANDBOX_STAMP)

# The tests' PostgreSQL server (tests/postgres_server.py starts one of its own): Debian's package, and its
# rum extension (keyword ranking from an index: core/store/postgres/ranking_index.py) for each version.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql; \
	  else echo "The tests need PostgreSQL: sudo apt-get install postgresql"; exit 1; fi; }
	@for v in $$(ls /usr/lib/postgresql 2>/dev/null); do \
	  ls /usr/share/postgresql/$$v/extension/rum.control >/dev/null 2>&1 || { \
	    if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql-$$v-rum; \
	    else echo "The tests need PostgreSQL's rum extension: sudo apt-get install postgresql-$$v-rum"; exit 1; fi; }; \
	done

run: $(STAMP) sandbox
	$(BIN)/python -m bots.console

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) sandbox postgres
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench.core_overhead
	$(BIN)/python -m bench.many_channels
	$(BIN)/python -m bench.chat_latency --platform slack
	$(BIN)/python -m bench.chat_load --platform slack
	$(BIN)/python -m bench.chat_latency --platform discord
	$(BIN)/python -m bench.chat_load --platform discord
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.search_latency
	$(BIN)/python -m bench.vector_index --sizes 10000,100000
	dpkg -s python3-doc >/dev/null 2>&1 || (apt-get update && apt-get install -y python3-doc)
	$(BIN)/python -m bench.retrieval

clean:
	rm -rf $(VENV) $(SANDBOX) build *.egg-info
