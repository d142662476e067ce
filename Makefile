# The two commands a new user needs (both set everything up on first use):
#   make demo   # the synth-en recipe end to end on the demo config
#   make test   # the test suite (includes the recipe on the tiny config)
SHELL := /bin/bash
CONFIG ?= conf/demo.yaml
PYTEST_ARGS ?=
# pytest-xdist workers of `make test` (tests/conftest.py keeps the tests of one recipe run together)
TEST_JOBS ?= 2

# bench/run_all.py options, e.g. BENCH_ARGS="--only decoding --demo-graph egs/synth-en/s5/data/lang/graph"
BENCH_ARGS ?=

.PHONY: setup demo test lint bench

setup:
	utils/setup_env.sh

demo: setup
	cd egs/synth-en/s5 && ./run.sh --config $(CONFIG)

test: setup
	.venv/bin/python -m pytest -q --durations=20 -n $(TEST_JOBS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

bench: setup
	.venv/bin/python bench/run_all.py $(BENCH_ARGS)

lint: setup
	.venv/bin/ruff check lm2am steps local tests
