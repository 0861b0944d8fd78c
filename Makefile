# cachelab: `make run` executes the whole series, `make test` runs every test. `make help` lists the rest.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup system run test test-fast refresh servers stop lint data clean bench check exercises prefetch site

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "cachelab needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1)." \
	  "Install a newer one (python.org, pyenv, brew install python@3.12) and run: make setup PYTHON=python3.12" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	@touch $@

setup: $(STAMP) ## create .venv, install the pinned requirements and the package, the servers and tools, the data
	@$(PY) -m cachelab setup-system
	@$(PY) -m cachelab data

system: $(STAMP) ## install the missing system tools (redis-server, memcached, wrk) where no password is needed
	@$(PY) -m cachelab setup-system

servers: setup ## start Redis and memcached (unless compose or REDIS_URL/MEMCACHED_SERVERS provide them)
	@$(PY) -m cachelab servers up

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

refresh: setup ## re-execute the committed notebooks in place (full measurements) for a reference run
	$(PY) -m cachelab run --in-place

check: setup ## is this machine ready? Python, packages, kernel, servers, ports, disk: OK or FAIL with the fix
	@$(PY) -m cachelab check

exercises: setup ## regenerate the participant copies (exercises/) from the notebooks' solution cells
	$(PY) -m cachelab exercises

prefetch: setup ## for bad Wi-Fi: wheels into wheelhouse/ and `docker compose pull` (see the README)
	$(PY) -m cachelab prefetch $(PREFETCH_ARGS)

site: setup ## the HTML site of the committed notebooks (their reference run) into build/site/, nothing run
	$(PY) -m cachelab site

lint: setup ## ruff over the package, the tests and the notebooks
	$(PY) -m ruff check cachelab tests notebooks

data: setup ## build the SQLite database from data/
	@$(PY) -m cachelab data

clean: stop ## remove generated files (build/, results/, figures/, .cachelab/); keeps .venv
	rm -rf build results figures .cachelab .pytest_cache
