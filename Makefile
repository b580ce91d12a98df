# Two entry points: `make up` runs the local stack, `make test` runs the suite.
# Each creates the virtual environment and installs the project when it is missing or stale.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: up test lint bench venv clean

# The C extensions are compiled by the install: a changed C source re-installs, so no stale module is loaded.
$(STAMP): pyproject.toml ingest_daemons/archive/_deliveries.c ingest_daemons/adapters/_kraken_book.c
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing ssmd and its dependencies into $(VENV) (first run takes about a minute)"
	@$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>/dev/null
	@$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@$(VENV)/bin/python -c "import ingest_daemons, ssmd_dagster" || (echo "install failed" >&2; exit 1)
	@touch $(STAMP)

venv: $(STAMP)

up: $(STAMP)
	$(VENV)/bin/ssmd up

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check ingest_daemons ssmd_dagster tests bench
	$(VENV)/bin/mypy ingest_daemons ssmd_dagster

bench: $(STAMP)
	$(VENV)/bin/python bench/connector_throughput.py

clean:
	rm -rf $(VENV) var
