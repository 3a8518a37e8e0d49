# ComfyWeb developer commands. `make run` and `make test` are all a fresh
# machine needs; both create the virtualenv and install what they use.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell bin/find-python)
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO ?= 3
# First port of the demo servers; empty: serve picks free ports from 18188 up.
DEMO_PORT ?=
# Tests need a SECRET_KEY but no secret: DEBUG stays off as in production.
TEST_ENV := SECRET_KEY=$${SECRET_KEY:-comfyweb-test-only-not-secret} COMFYWEB_DATA_DIR=$${COMFYWEB_DATA_DIR:-var/test}

.PHONY: help run test lint format migrations-check pytest bench sim-image clean

help:
	@echo "make run     start ComfyWeb on http://$(HOST):$(PORT) (SQLite, embedded Redis, $(DEMO) simulated ComfyUI servers)"
	@echo "             (DEMO=N servers from DEMO_PORT=P; INSTALLER=pip installs without uv)"
	@echo "make test    lint, migrations check and the whole test suite"
	@echo "make lint    ruff check + ruff format --check + import-cycle check"
	@echo "make format  apply ruff's fixes and formatting"
	@echo "make bench   run the benchmarks under bench/"
	@echo "make sim-image  build the simulated ComfyUI image into both test Docker engines"

# uv makes and fills the virtualenv (pip where uv cannot be had): see bin/venv.
$(PY):
	@test -n "$(PYTHON)" || { bin/find-python; exit 1; }
	bin/venv create $(PYTHON) $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	bin/venv install $(VENV) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	bin/venv install $(VENV) -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	DEBUG=$${DEBUG:-true} $(PY) manage.py serve --host $(HOST) --port $(PORT) \
		$(if $(DEMO),--demo $(DEMO)) $(if $(DEMO_PORT),--demo-port $(DEMO_PORT))

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check . bin/import-cycles
	$(VENV)/bin/ruff format --check . bin/import-cycles
	$(PY) bin/import-cycles

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix . bin/import-cycles
	$(VENV)/bin/ruff format . bin/import-cycles

migrations-check: $(VENV)/.installed-dev
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run

pytest: $(VENV)/.installed-dev
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

test: lint migrations-check pytest

bench: $(VENV)/.installed-dev
	@for script in bench/bench_*.py; do echo "== $$script"; $(TEST_ENV) $(PY) $$script $$(grep -q -e '"--quick"' $$script && echo --quick) || exit 1; done

# The simulated ComfyUI as a registry-free image in the two test Docker engines
# (../shared/docker/docker-test-hosts-up.sh starts them); see bin/sim-image.
sim-image: $(VENV)/.installed
	PY=$(PY) bin/sim-image

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
