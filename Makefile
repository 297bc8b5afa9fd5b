# Two commands for a fresh machine:
#   make serve   install and run the rendezvous server on the embedded in-memory store
#   make test    install and run the whole test suite (Node and Synapse peers install themselves)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install peers serve test lint format typecheck docs clean mutate mutate-report

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

# Mutation testing, a developer tool (never run by `make test` or CI); see docs/testing.md, "Mutation testing".
#   make mutate MODULE=channel    one module: channel flow e2ee codec gen1 gen2 store; without MODULE, all of them
#   MUTATE_JOBS=1                 parallel mutants (each runs pytest); keep it low on a shared 2-core machine
#   MUTATE_BUDGET=1800            seconds for the whole run; on expiry mutmut stops, keeping the verdicts so far
# The configuration (modules, tests, per-mutant timeout) is [tool.mutmut] in pyproject.toml; results in mutants/.
MUTATE_JOBS   ?= 1
MUTATE_BUDGET ?= 1800
MUTATE_channel := 'qrlink_client.channel.*'
MUTATE_flow    := 'qrlink_client.flow.*'
MUTATE_e2ee    := 'qrlink_client.e2ee.*'
MUTATE_codec   := 'qrlink_client.qr.codec.*'
MUTATE_gen1    := 'rendezvous.gen1.*'
MUTATE_gen2    := 'rendezvous.gen2.*'
MUTATE_store   := 'rendezvous.store.*'

mutate: $(STAMP)
	$(if $(MODULE),$(if $(MUTATE_$(MODULE)),,$(error MODULE must be one of: channel flow e2ee codec gen1 gen2 store)))
	-timeout --foreground -s INT -k 30 $(MUTATE_BUDGET) $(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(MUTATE_$(MODULE))
	$(BIN)/python -m tests.support.mutation_report

mutate-report: $(STAMP)
	$(BIN)/python -m tests.support.mutation_report

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mutants
