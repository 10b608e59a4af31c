# Developer entry points. `make test` is what CI runs (.ci/run).

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# First of python3.11 / python3.12 / python3 that is at least 3.11.
PYTHON ?= $(shell for p in python3.11 python3.12 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& { echo $$p; break; }; done)

.PHONY: venv test test-unit lint demo down clean bench bench-quick soak

venv: $(STAMP)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: need python >= 3.11 (python3.11, python3.12 or python3)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Two workers, a test module on one worker each (its module fixtures start once): on two cores,
# about 8.5 min instead of 11.7 (most tests wait on servers). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# The tests that need no PostgreSQL, NATS or Temporal, in seconds (tests/conftest.py: marker `services`).
test-unit: venv
	MEMSAGA_TEST_TIER=unit $(BIN)/pytest -q -m "not services"

# Benchmarks beside their baselines (docs/performance.md); uses MEMSAGA_* or the local stack.
bench: venv
	$(BIN)/memsaga bench

bench-quick: venv
	$(BIN)/memsaga bench --quick

# The soak of issue 15 (docs/reliability.md, "Chaos and soak"): 2,000 sagas under 500 random faults
# on a stack of its own (never the configured services). SOAK_SEED=N repeats a run.
SOAK_SEED ?= 15
soak: venv
	$(BIN)/memsaga chaos --sagas 2000 --faults 500 --seed $(SOAK_SEED)

# The whole product once (memsaga/demo.py); `memsaga demo --keep` leaves the stack up for the UI.
demo: venv
	$(BIN)/memsaga demo

down: venv
	$(BIN)/memsaga dev down

# Stops the local stack first: deleting .memsaga under running servers would orphan them.
clean:
	-test -x $(BIN)/memsaga && $(BIN)/memsaga dev down
	rm -rf .memsaga .mypy_cache .ruff_cache .pytest_cache build dist
