# Two commands do the whole set-up on a fresh machine with python3.11 and make:
#   make demo   - end-to-end demo on the synthetic set -> outputs/demo/{summary.json,report.html}
#   make test   - the test suite (make test-fast: without the tests that train or build)
#   make lint   - ruff check and ruff format --check (CI runs make lint and make test)
#   make docs   - the documentation site on http://127.0.0.1:8000 (make docs-build: outputs/site)
# Each creates .venv when missing and installs the pinned stack (torch first), then skips the
# install until pyproject.toml or this Makefile changes.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch must come first: installed alone, pip takes the pinned build (see docs/environment.md).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# CVAT's own mask conversion for the contract tests, in a folder of its own (see the file).
ORACLE_DIR := $(VENV)/cvat-oracle
ORACLE_REQS := tests/cvat-oracle-requirements.txt
EXTRAS ?= all,dev
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml loopback/pyproject.toml Makefile tests/cvat-oracle-requirements.txt | sha256sum | cut -c1-16)-$(subst $(comma),_,$(EXTRAS))
comma := ,

.PHONY: install demo test test-fast lint format clean docs docs-build

# With the dev extra, install also installs the bridge's test and demo equipment (loopback/, a
# distribution of its own that the project's wheel does not carry).

install: $(STAMP)

$(STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check $(TORCH_PINS)
	$(PIP) install --disable-pip-version-check -e '.[$(EXTRAS)]'
	$(if $(filter dev,$(subst $(comma), ,$(EXTRAS))),$(PIP) install --disable-pip-version-check --no-deps -e ./loopback)
	$(PIP) check
	$(PIP) install --disable-pip-version-check --no-deps --upgrade --target $(ORACLE_DIR) -r $(ORACLE_REQS)
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: install
	$(PY) -m pipeline.demo

# the bridge's tests start Debian's redis-server and PostgreSQL: installed here when missing
test: install
	scripts/ensure_servers.sh
	$(PY) -m pytest --durations=15

# the loop to run while working: every test but those marked slow (they train or build; tests/conftest.py)
test-fast: install
	$(PY) -m pytest -m "not slow"

# the documentation site (mkdocs.yml): served on http://127.0.0.1:8000, or built into outputs/site
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve -a 127.0.0.1:8000

docs-build: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf outputs .pytest_cache .ruff_cache
