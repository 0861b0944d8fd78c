# cachelab: `make run` executes the whole series, `make test` runs every test. `make help` lists the rest.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# `make setup OFFLINE=1`: install from wheelhouse/ (`make prefetch`) only, never from the network
WHEELHOUSE ?= wheelhouse
OFFLINE    ?=
OFFLINE_ON := $(filter 1 yes true,$(OFFLINE))
PIP_FROM   := $(if $(OFFLINE_ON),--no-index --find-links $(WHEELHOUSE))
# the Python that the checks are about: the venv's once it exists, else the one that will make it. The check
# is a plain script that prints one FAIL line and exits 2 when it is too old; a Python it cannot run on fails too.
CHECK_PY   = $(if $(wildcard $(PY)),$(PY),$(PYTHON))
NEED_WHEELHOUSE = test -d $(WHEELHOUSE) || { echo "make setup OFFLINE=1 installs from $(WHEELHOUSE)/, which is not \
	here: run make prefetch on a machine with a network, and copy the repository with its wheelhouse/." >&2; exit 2; }
CHECK_PYTHON = $(CHECK_PY) cachelab/kit/check.py --python-only 2>/dev/null; code=$$?; \
	if [ $$code -ne 0 ] && [ $$code -ne 2 ]; then echo "FAIL  Python: $(CHECK_PY) could not run the check \
	(missing, or too old to run it) -> fix: install Python 3.11 or newer, then make setup PYTHON=python3.12"; exit 2; fi; \
	exit $$code

.DEFAULT_GOAL := help
.PHONY: help setup system run test test-fast refresh servers stop lint data clean bench check exercises prefetch site soak lab \
	python-version

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-10s %s\n", $$1, $$2}'

# the one Python check, before anything is installed: plain Python, no package imported (exit 2 when too old)
python-version:
	@$(CHECK_PYTHON)

$(STAMP): requirements.txt pyproject.toml
	@$(CHECK_PYTHON)
	@$(if $(OFFLINE_ON),$(NEED_WHEELHOUSE))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_FROM) -r requirements.txt -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	@touch $@

setup: $(STAMP) ## create .venv, install the pinned requirements and the package, the servers and tools, the data (OFFLINE=1: from wheelhouse/)
	@$(if $(OFFLINE_ON),CACHELAB_OFFLINE=1 )$(PY) -m cachelab setup-system
	@$(PY) -m cachelab data

system: $(STAMP) ## install the missing system tools (redis-server, memcached, wrk) where no password is needed
	@$(if $(OFFLINE_ON),CACHELAB_OFFLINE=1 )$(PY) -m cachelab setup-system

servers: setup ## start Redis and memcached (unless compose or REDIS_URL/MEMCACHED_SERVERS provide them)
	@$(PY) -m cachelab servers up

lab: servers ## JupyterLab at the repository's root: work in exercises/, the worked solutions are in notebooks/
	$(PY) -m jupyterlab --ServerApp.root_dir=. --ip=127.0.0.1 $(LAB_ARGS)

stop: ## stop the servers that `make servers` started (never anyone else's)
	@test -x $(PY) && $(PY) -m cachelab servers down || true

run: setup ## execute every notebook against real servers into build/ (HTML report, figures, results)
	$(PY) -m cachelab run

test: setup ## run the whole test suite: package tests and every notebook, against real servers
	$(PY) -m cachelab with-servers -- $(PY) -m pytest

test-fast: $(STAMP) ## the unit tests only: no servers, no notebooks, no browser (under a minute)
	@$(PY) -m cachelab data > /dev/null
	$(PY) -m pytest -m unit -q

bench: setup ## each caching layer next to its floor, client and servers pinned apart (BENCH_ARGS="--pin CPU" or "--no-pin")
	$(PY) -m cachelab with-servers -- $(PY) -m cachelab bench $(BENCH_ARGS)

soak: setup ## run the series RUNS times (default 5) and tally failures and measured claims not shown per notebook and claim
	$(PY) -m cachelab soak --runs $(or $(RUNS),5) $(SOAK_ARGS)

refresh: setup ## re-execute the committed notebooks in place (full measurements) for a reference run
	$(PY) -m cachelab run --in-place

check: python-version setup ## is this machine ready? Python first, packages, kernel, servers, ports, disk: OK or FAIL with the fix
	@$(PY) -m cachelab check

exercises: setup ## regenerate the participant copies (exercises/) from the notebooks' solution cells
	$(PY) -m cachelab exercises

prefetch: setup ## for bad Wi-Fi: wheels for Linux/WSL and macOS, the server .debs, `docker compose pull`, into wheelhouse/
	$(PY) -m cachelab prefetch $(PREFETCH_ARGS)

site: setup ## the HTML site of the committed notebooks (their reference run) into build/site/, nothing run
	$(PY) -m cachelab site

lint: setup ## ruff over the package, the tests and the notebooks
	$(PY) -m ruff check cachelab tests notebooks

data: setup ## build the SQLite database from data/
	@$(PY) -m cachelab data

clean: stop ## remove generated files (build/, results/, figures/, .cachelab/); keeps .venv
	rm -rf build results figures .cachelab .pytest_cache
