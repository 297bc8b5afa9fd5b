# Two commands for a fresh machine:
#   make serve   install and run the rendezvous server on the embedded in-memory store
#   make test    install and run the whole test suite (Node and Synapse peers install themselves)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install peers serve test lint format typecheck docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/rendezvous serve $(ARGS)

# The Node packages (matrix-js-sdk, matrix-sdk-crypto-wasm) and Synapse's own virtualenv the tests run against.
peers: $(STAMP)
	$(BIN)/python -m tests.peers

test: $(STAMP) peers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

LINTED := rendezvous qrlink_client devstack tests bench examples

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

# Applies the formatting that `make lint` checks.
format: $(STAMP)
	$(BIN)/ruff format $(LINTED)

typecheck: lint

# Rewrites the example sections of the docs from the files in examples/ (tests/test_doc_examples.py checks them).
docs: $(STAMP)
	$(BIN)/python -m tests.support.doc_examples

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
