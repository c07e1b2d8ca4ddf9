# Two entry points (see README): `make demo` and `make test`. Both create/reuse .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= .jobforge/demo

.PHONY: venv demo test unit lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	$(VENV)/bin/jobforge config create examples/commands.txt -c $(DEMO_DIR)/config.json
	$(VENV)/bin/jobforge run $(DEMO_DIR)/config.json --output $(DEMO_DIR)/output || true

test: venv
	$(PY) -m ruff check airflow_jobforge tests benchmarks
	$(PY) -m pytest -q

unit: venv
	$(PY) -m pytest -q tests/unit

bench: venv
	$(PY) benchmarks/planner.py
	$(PY) benchmarks/node_runner.py

clean:
	rm -rf $(VENV) .jobforge
