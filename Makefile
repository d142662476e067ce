# The commands a new user needs (each sets everything up on first use):
#   make demo   # the synth-en recipe end to end on the demo config (CE + the two KD picks, 3 seeds)
#   make full   # the same with the paper's whole ablation (10 systems, 3 seeds each)
#   make test   # the test suite (includes the recipe on the tiny config)
SHELL := /bin/bash
CONFIG ?= conf/demo.yaml
# more run.sh options, e.g. RUN_ARGS="--stage 14 --data-sizes '0.5 1'"
RUN_ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers of `make test` (tests/conftest.py keeps the tests of one recipe run together)
TEST_JOBS ?= 2

# bench/run_all.py options, e.g. BENCH_ARGS="--only decoding --demo-graph egs/synth-en/s5/data/lang/graph"
BENCH_ARGS ?=

.PHONY: setup demo full test lint bench

setup:
	utils/setup_env.sh

demo: setup
	cd egs/synth-en/s5 && ./run.sh --config $(CONFIG) $(RUN_ARGS)

full: setup
	cd egs/synth-en/s5 && ./run.sh --config $(CONFIG) --am-systems paper --extra-seed-systems paper $(RUN_ARGS)

test: setup
	.venv/bin/python -m pytest -q --durations=20 -n $(TEST_JOBS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

bench: setup
	.venv/bin/python bench/run_all.py $(BENCH_ARGS)

lint: setup
	.venv/bin/ruff check lm2am steps local tests
