# consortia: the two commands a new user runs are `make run` and `make test`.
# Both create .venv when missing and install everything pinned in constraints.txt.

SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-cluster
# pytest workers: both cores by default; override with `make test JOBS=1`.
JOBS ?= 2

.PHONY: setup run test lint typecheck unit sim bench soak clean

$(STAMP): pyproject.toml constraints.txt scripts/setup-system.sh src/consortia/execution/_jmt_native.c src/consortia/execution/_jmt_update.c src/consortia/execution/_jmt_native.h
	bash scripts/setup-system.sh
	@test -x $(PYTHON) || { \
	  PY=$$(command -v python3.11 || command -v python3); \
	  $$PY -c 'import sys; assert sys.version_info[:2] == (3, 11), "consortia needs Python 3.11, found " + sys.version' && \
	  $$PY -m venv $(VENV); }
	$(PYTHON) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# A live 4-validator consortium in $(DEMO_DIR)/ (made again when stale), a demo workload and a
# dashboard until Ctrl-C, which stops every node cleanly.
run: setup
	$(VENV)/bin/consortia cluster demo --home $(DEMO_DIR)

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -n $(JOBS) --dist loadgroup tests

test: lint typecheck unit

# Benchmarks print numbers and write JSON under bench-results/ (never part of `make test`).
bench: setup
	$(PYTHON) benchmarks/crypto_bench.py --repeat 5 --json bench-results/crypto.json
	$(PYTHON) benchmarks/privacy_bench.py --repeat 5 --json bench-results/privacy.json
	$(PYTHON) benchmarks/consensus_figures.py --seeds 5 --json bench-results/consensus.json
	$(PYTHON) benchmarks/attack_figures.py --seeds 5 --json bench-results/attack.json

# The mixed adversary over many seeds on every core (never part of `make test`): n=4 and n=7,
# f Byzantine validators drawing strategies per seed, f crashing at protocol moments,
# partitions. Prints progress; writes the reports under bench-results/.
SOAK_SEEDS ?= 10000
SOAK_JOBS ?= $(shell nproc)
soak: setup
	status=0; \
	$(VENV)/bin/consortia sim --nodes 4 --byzantine 1 --crash 1 --partitions \
	  --seeds $(SOAK_SEEDS) --jobs $(SOAK_JOBS) --out bench-results/soak-n4.json || status=1; \
	$(VENV)/bin/consortia sim --nodes 7 --byzantine 2 --crash 2 --partitions \
	  --seeds $(SOAK_SEEDS) --jobs $(SOAK_JOBS) --out bench-results/soak-n7.json || status=1; \
	exit $$status

clean:
	@if [ -x $(VENV)/bin/consortia ] && [ -d $(DEMO_DIR) ]; then \
	  $(VENV)/bin/consortia cluster down --home $(DEMO_DIR) || true; fi
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis $(DEMO_DIR)
