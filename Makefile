# Two commands: `make run` and `make test`. Both bootstrap a local venv from
# nothing but a Python >= 3.11 on PATH.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NPM_STAMP := tests/npm/node_modules/.installed
LOCK   := requirements.lock

.PHONY: run test venv clean bench browser lock

# The venv holds exactly what requirements.lock pins (every runtime and test dependency and the
# build backend, each file checked against its sha256), then lemi itself, editable, built by that
# pinned hatchling: nothing unpinned or unhashed is installed. The stamp is redone when the lock
# or pyproject.toml changes (`make clean` first for a venv without packages the lock dropped).
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# `make lock` writes requirements.lock again from pyproject.toml; run it after changing a
# dependency there and commit both (tests/test_lock.py fails while they disagree). Pins already in
# the lock are kept where they still fit: `make lock LOCK_ARGS=--upgrade` moves every pin to the
# newest release, `LOCK_ARGS='--upgrade-package aiohttp'` one of them.
# uv resolves, because it is the best kept of the tools that write a hashed requirements file pip
# installs: one lock for every platform and Python >= 3.11 (--universal: pip-tools' pip-compile
# resolves only for the machine it runs on, so a lock made on Linux would lack Windows or macOS
# pins), a hash for every wheel and sdist, and frequent releases. It is installed at a pinned
# version into a throwaway venv for the run, never into $(VENV).
UV_VERSION := 0.13.9
lock:
	@tools=$$(mktemp -d) && trap 'rm -rf "$$tools"' EXIT && \
	$(PYTHON) -m venv "$$tools" && \
	"$$tools/bin/python" -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) && \
	"$$tools/bin/uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	  --extra test --group build --custom-compile-command 'make lock' $(LOCK_ARGS) \
	  pyproject.toml -o $(LOCK)

# the App: intake, and the work in a `lemi worker` process beside it at a lower priority (the
# Procfile's two lines, one command; Ctrl-C or SIGTERM stops both); ./.env (the setup page writes
# it on the first run) fills in unset variables, and a worker started before it waits for it
run: $(STAMP)
	$(BIN)/lemi serve --with-worker --env-file .env

# GitHub's OpenAPI description and webhook examples, pinned by tests/npm/package-lock.json
$(NPM_STAMP): tests/npm/package.json tests/npm/package-lock.json $(STAMP)
	cd tests/npm && PATH="$(CURDIR)/$(BIN):$$PATH" npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(NPM_STAMP)

# Debian's Chromium and its WebDriver, for the setup page's browser test (tests/test_setup_page.py)
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)

# the suite on every core, at most 4 workers (pytest-xdist); `make test PYTEST_ARGS=tests/test_x.py`
# runs one file in one process
PYTEST_ARGS ?= -n auto --maxprocesses 4
test: $(STAMP) $(NPM_STAMP) browser
	$(BIN)/ruff check bot handlers tools tests bench
	$(BIN)/ruff format --check bot handlers tools tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (bench/, results in BENCHMARKS.md): GitHub and AWS calls per flow against the
# test fakes; webhook intake under wrk against Probot and a bare endpoint, idle and with its worker
# busy (needs wrk: it says how to install it and goes on without); push-to-UpdateService overhead;
# 200 services pushed at once with 5-minute rollouts (about 7 minutes; `bench/rollouts.py --help`)
bench: $(STAMP) $(NPM_STAMP)
	$(BIN)/python bench/calls.py
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/deploy_overhead.py
	$(BIN)/python bench/rollouts.py

# regenerate the generated pages of docs/ from the code (tests/test_docs.py fails when they drift)
.PHONY: docs
docs: $(STAMP)
	$(BIN)/python -m tools.docs

clean:
	rm -rf $(VENV) .pytest_cache tests/npm/node_modules
