# The two commands of the README:
#   make dev    start a single-node dev agent (sets everything up on first use)
#   make test   run the test suite (installs what the tests need on first use)
# and the benchmarks (as root, on a quiet machine; see bench/RESULTS.md):
#   make bench        the comparisons (DNS, LB, TLS, gossip, start-up), raw rounds under
#                     bench/results/<date>/, then the RESULTS.md tables regenerated (~85 min)
#   make bench-quick  each comparison once, short (a smoke run, ~3 min; no figures kept)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test unit integration bench bench-dns bench-lb bench-tls bench-gossip bench-startup bench-report \
	bench-quick lint clean

$(STAMP): pyproject.toml setup.py gossip/_lzwc.c dnsserver/_udpc.c lb/_splicec.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[fast,test]'
	touch $(STAMP)

# The source tree's bytecode, written now (only what changed since): an editable install
# leaves it to the first import, and with PYTHONDONTWRITEBYTECODE set (this machine sets it)
# every agent started would compile Rumor's modules again, ~0.2 CPU-s each (bench/startup.py
# --compile; bench/RESULTS.md, "Agent start-up").
PYC := $(BIN)/python -m compileall -q gossip dnsserver lb registry >/dev/null

dev: $(STAMP)
	$(PYC)
	$(BIN)/rumor agent -dev

# Two xdist workers; the namespace tests run one after the other on one of them (their group,
# tests/conftest.py); then the tests marked alone (they need both cores), on their own.
# --durations: the slowest tests, in every CI log.
test: $(STAMP)
	./scripts/setup-system.sh
	$(PYC)
	$(BIN)/python -m pytest -q -ra -n 2 --dist loadgroup --no-loadscope-reorder --durations=25 \
		-m 'not alone'; a=$$?; $(BIN)/python -m pytest -q -ra --durations=5 -m alone; \
		b=$$?; test $$a = 0 && test $$b = 0

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)
	./scripts/setup-system.sh
	$(PYC)
	$(BIN)/python -m pytest -q -ra tests/integration

bench: $(STAMP)
	$(MAKE) bench-dns
	$(MAKE) bench-lb
	$(MAKE) bench-tls
	$(MAKE) bench-gossip
	$(MAKE) bench-startup
	$(MAKE) bench-report

bench-dns: $(STAMP)
	./scripts/setup-system.sh
	$(BIN)/python bench/dns_vs_dnsmasq.py --rumor agent --rounds 5

bench-lb: $(STAMP)
	./scripts/setup-system.sh
	$(BIN)/python bench/lb_vs_haproxy.py --rounds 5

bench-tls: $(STAMP)
	./scripts/setup-system.sh
	$(BIN)/python bench/tls_vs_haproxy.py --rounds 5

bench-gossip: $(STAMP)
	./scripts/setup-system.sh
	$(BIN)/python bench/gossip_vs_serf.py --rounds 5 --trials 2 --idle 30

bench-startup: $(STAMP)
	./scripts/setup-system.sh
	$(BIN)/python bench/startup.py --rounds 7 --compile

bench-report: $(STAMP)
	$(BIN)/python bench/report.py --write

bench-quick: $(STAMP)
	./scripts/setup-system.sh
	$(BIN)/python bench/dns_vs_dnsmasq.py --rumor agent --quick
	$(BIN)/python bench/lb_vs_haproxy.py --quick
	$(BIN)/python bench/tls_vs_haproxy.py --quick
	$(BIN)/python bench/gossip_vs_serf.py --quick
	$(BIN)/python bench/report.py --results bench/out/quick --quick

lint: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m ruff check gossip dnsserver lb registry
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
