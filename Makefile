# The two commands of the README:
#   make dev    start a single-node dev agent (sets everything up on first use)
#   make test   run the test suite (installs what the tests need on first use)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test unit integration bench-dns bench-lb bench-gossip lint clean

$(STAMP): pyproject.toml setup.py gossip/_lzwc.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[fast,test]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/rumor agent -dev

test: $(STAMP)
	./scripts/setup-system.sh
	$(BIN)/python -m pytest -q -ra

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)
	./scripts/setup-system.sh
	$(BIN)/python -m pytest -q -ra tests/integration

lint: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m ruff check gossip dnsserver lb registry
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
