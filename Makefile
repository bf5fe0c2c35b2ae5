# The two entry points a newcomer needs are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out/demo

PEERS := out/venv-peers
PEERS_STAMP := $(PEERS)/.installed

.PHONY: demo test prepare lint typecheck unit bench clean install peers

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# LiteLLM and unmimic in a virtualenv of their own (their pins must not touch ours): the LiteLLM
# guardrail tests run against the real LiteLLM proxy, and `bench gateway` measures both peers.
$(PEERS_STAMP): $(STAMP)
	$(BIN)/python -c "from pathlib import Path; from distillguard.gateway.bench import install_peers; install_peers(Path('$(PEERS)'))"
	touch $(PEERS_STAMP)

peers: $(PEERS_STAMP)

demo: $(STAMP)
	$(BIN)/distillguard demo --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(PEERS_STAMP)
	$(BIN)/pytest -n 2 -q

# The machine's side of the tests (Debian's Chromium, Java, Redis and PostgreSQL running): the
# same script .ci/run calls; it names what it cannot provide, and fails under CI=true.
prepare:
	bash scripts/prepare-test-env.sh

test: prepare lint typecheck unit

# Benchmarks print numbers next to baselines measured in the same run; never part of `make test`.
bench: $(STAMP) $(PEERS_STAMP)
	$(BIN)/distillguard bench signals --corpus ../shared/data
	$(BIN)/distillguard demo --no-serve --preset default --seed 303 --corpus ../shared/data --out out/bench/detect
	$(BIN)/distillguard bench detect-suite --preset careful --preset small --corpus ../shared/data --split test --seed 303
	$(BIN)/distillguard bench scan --preset large
	$(BIN)/distillguard bench scan --preset default --reuse --engine spark
	$(BIN)/distillguard bench review
	$(BIN)/distillguard bench gateway

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
