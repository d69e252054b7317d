# The two set-up commands: `make demo` and `make test`. Both build .venv on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint format install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[opencv,train,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgevision demo

lint: $(STAMP)
	$(VENV)/bin/ruff check edgevision tests tools
	$(VENV)/bin/ruff format --check edgevision tests tools

format: $(STAMP)
	$(VENV)/bin/ruff format edgevision tests tools
	$(VENV)/bin/ruff check --fix edgevision tests tools

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo runs
