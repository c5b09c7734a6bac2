# DOLPHIN — two commands: `make run` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run stop test bench lint venv clean status cluster cluster-stop hz-jar soak

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,nautilus]'
	touch $(STAMP)

# three workers (pytest-xdist) on a 2-core box: much of the suite waits on meshes, simulators and JVMs (2 workers:
# 660 s, 3: 533 s). tests/conftest.py groups the suite: each module whole on one worker, every mesh-starting test
# (tests/e2e/, @pytest.mark.serial) in one group, one at a time; one real-member JVM, one Prefect server
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -p tests.results_plugin -n 3 --dist loadgroup --durations=25

# ruff (pyflakes, pycodestyle, bugbear, blind-except) over the tree; mypy over the runtime, bus and settings
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

BENCH_STAMP := $(VENV)/.bench-stamp

# the bench extra (vectorbt, the backtest's yardstick) is installed for benchmarks only
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,nautilus,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/bench -s

# chaos soak of the whole mesh (tests/soak): kill -9, ws faults, full journal, garbage; run_logs/soak_*.json
MINUTES ?= 10
SEED ?=
soak: $(STAMP)
	$(PY) -m tests.soak --minutes $(MINUTES) $(if $(SEED),--seed $(SEED))

run: $(STAMP)
	$(PY) -m ops.mesh up

stop: $(STAMP)
	$(PY) -m ops.mesh down

status: $(STAMP)
	$(PY) -m ops.mesh status

# cluster profile on one machine: 3 real Hazelcast 5.3.8 members (needs java + mvn), then the mesh on them
CLUSTER_ARGS := --profile cluster --hz-members 3

cluster: $(STAMP)
	$(PY) -m ops.mesh up $(CLUSTER_ARGS)

cluster-stop: $(STAMP)
	$(PY) -m ops.mesh down $(CLUSTER_ARGS)

# fetch the pinned Hazelcast jar into .cache/hazelcast (the tests and `make cluster` do it on first use)
hz-jar: $(STAMP)
	$(PY) -m standins.hz_real --fetch-only

clean:
	rm -rf $(VENV) build *.egg-info
