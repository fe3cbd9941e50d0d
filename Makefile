# Two commands: `make run` and `make test`. Both bootstrap a local venv from
# nothing but a Python >= 3.11 on PATH.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NPM_STAMP := tests/npm/node_modules/.installed

.PHONY: run test venv clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/lemi serve

# GitHub's OpenAPI description and webhook examples, pinned by tests/npm/package-lock.json
$(NPM_STAMP): tests/npm/package.json tests/npm/package-lock.json $(STAMP)
	cd tests/npm && PATH="$(CURDIR)/$(BIN):$$PATH" npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(NPM_STAMP)

test: $(STAMP) $(NPM_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# GitHub and AWS calls per flow, against the test fakes (see bench/)
bench: $(STAMP) $(NPM_STAMP)
	$(BIN)/python bench/calls.py

clean:
	rm -rf $(VENV) .pytest_cache tests/npm/node_modules
