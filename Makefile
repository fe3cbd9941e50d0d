# Two commands: `make run` and `make test`. Both bootstrap a local venv from
# nothing but a Python >= 3.11 on PATH.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NPM_STAMP := tests/npm/node_modules/.installed

.PHONY: run test venv clean bench browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# the App's server; ./.env (the setup page writes it on the first run) fills in unset variables
run: $(STAMP)
	$(BIN)/lemi serve --env-file .env

# GitHub's OpenAPI description and webhook examples, pinned by tests/npm/package-lock.json
$(NPM_STAMP): tests/npm/package.json tests/npm/package-lock.json $(STAMP)
	cd tests/npm && PATH="$(CURDIR)/$(BIN):$$PATH" npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(NPM_STAMP)

# Debian's Chromium and its WebDriver, for the setup page's browser test (tests/test_setup_page.py)
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)

test: $(STAMP) $(NPM_STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (bench/, results in BENCHMARKS.md): GitHub and AWS calls per flow against the
# test fakes; webhook acknowledgement against a bare endpoint; push-to-UpdateService overhead
bench: $(STAMP) $(NPM_STAMP)
	$(BIN)/python bench/calls.py
	$(BIN)/python bench/ack.py
	$(BIN)/python bench/deploy_overhead.py

# regenerate the generated pages of docs/ from the code (tests/test_docs.py fails when they drift)
.PHONY: docs
docs: $(STAMP)
	$(BIN)/python -m bot.docs

clean:
	rm -rf $(VENV) .pytest_cache tests/npm/node_modules
