# The two commands a newcomer needs: `make demo` and `make test`. Everything else is set-up they call.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PYTHON := $(BIN)/python

.PHONY: demo test setup venv docker images postgres redis bench load-test soak clean

demo: venv docker images
	$(BIN)/python scripts/demo.py

test: setup
	$(BIN)/pytest tests

# Docker runtime configurations against native on this machine (~15-20 min on 2 cores); writes bench/results.json
# and docs/benchmarks.md. On a shared machine: flock /tmp/adr-e2e.lock make bench. Counts:
# make bench BENCH_ARGS="--tasks 30 --sleep-tasks 16 --task-rounds 2 --parse-rounds 3" (see bench/run.py --help).
bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# CeleryExecutor load test: 200 short tasks across two workers; writes its section of docs/benchmarks.md.
load-test: setup
	$(BIN)/python bench/celery_load.py --write

# Soak: 1,000 short tries (LocalExecutor, parallelism 4) and 200 parses through the docker runtime; fails on a
# lost try or a leak (containers, run directories, fds, sockets; worker RSS growth > 50 MB); writes its section
# of docs/benchmarks.md. A 100-try version runs in `make test` (tests/e2e/test_soak.py).
soak: setup
	$(BIN)/python bench/soak.py --write

setup: venv docker images postgres redis

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

docker:
	scripts/ensure-docker.sh

images: venv docker
	scripts/build-images.sh

postgres:
	scripts/ensure-postgres.sh

redis:
	scripts/ensure-redis.sh

clean:
	rm -rf $(VENV) .cache
