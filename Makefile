# DOLPHIN — two commands: `make run` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run stop test bench venv clean status

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -p tests.results_plugin

bench: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/bench -s

run: $(STAMP)
	$(PY) -m services.mesh up

stop: $(STAMP)
	$(PY) -m services.mesh down

status: $(STAMP)
	$(PY) -m services.mesh status

clean:
	rm -rf $(VENV) build *.egg-info
