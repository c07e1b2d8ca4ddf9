# Two entry points (see README): `make demo` and `make test`. Both create/reuse .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= .jobforge/demo
# Material for MkDocs prints a banner about MkDocs 2.0 on every build; it is no warning.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs

.PHONY: venv demo test unit oldest docs cluster deployment bench docker-test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,postgres,docs,spark,celery]"
	touch $(STAMP)

venv: $(STAMP)

# The oldest Airflow 3 minor jobforge supports (pyproject.toml says apache-airflow>=3.1), in a
# venv of its own: `make oldest` runs the unit tests and the embedded (dag.test) integration
# tests (marker `embedded`) against its newest patch release.
OLDEST_AIRFLOW ?= 3.1.*
OLDEST_VENV ?= .venv-oldest
OLDEST_PY := $(OLDEST_VENV)/bin/python
OLDEST_STAMP := $(OLDEST_VENV)/.installed

$(OLDEST_STAMP): pyproject.toml
	test -x $(OLDEST_PY) || $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_PY) -m pip install -q --upgrade pip
	$(OLDEST_PY) -m pip install -q -e ".[test]" "apache-airflow==$(OLDEST_AIRFLOW)"
	touch $(OLDEST_STAMP)

# examples/commands.txt -> config -> a DAG run by real Airflow (SQLite, backend local).
# One job of the example fails on purpose: the summary shows it.
demo: venv
	mkdir -p $(DEMO_DIR)
	$(VENV)/bin/jobforge config create examples/commands.txt -c $(DEMO_DIR)/demo.json
	$(VENV)/bin/jobforge run $(DEMO_DIR)/demo.json --backend local --output $(DEMO_DIR)/output \
		|| echo "(exit code $$?: some jobs did not succeed, as the example intends)"

# As root, the real SLURM cluster + loopback sshd are started first (idempotent), with three
# namespace nodes for the multi-node tests, and the container runtimes and test images
# (podman, charliecloud); without root the integration tests skip, except under CI=true where
# they fail.
cluster:
	@if [ "$$(id -u)" = 0 ]; then scripts/slurm/start.sh --nodes 3 && scripts/containers/build-images.sh; \
	else echo "not root: SLURM cluster not started, integration tests will skip"; fi

# As root, the real Airflow deployment (PostgreSQL, api-server, scheduler, dag-processor,
# triggerer) and Debian's headless Chromium for the UI tests (idempotent). It stays up after
# the tests: scripts/airflow/stop.sh [--all] stops it. The Celery/HA tests
# (tests/deployment/test_celery_ha.py) switch it to the celery profile and back themselves.
deployment: venv cluster
	@if [ "$$(id -u)" = 0 ]; then scripts/browser/install.sh && scripts/airflow/start.sh; \
	else echo "not root: Airflow deployment not started, deployment tests will skip"; fi

test: venv cluster deployment
	$(PY) -m ruff check airflow_jobforge tests benchmarks scripts
	$(MKDOCS) build --strict
	$(PY) -m pytest -q --durations=10
	@if [ "$$(id -u)" = 0 ]; then docker/test.sh; \
	elif [ "$${CI:-}" = true ]; then echo "CI=true and not root: docker/test.sh cannot run" >&2; exit 1; \
	else echo "not root: the container stack test (docker/test.sh) did not run"; fi
	$(MAKE) oldest

unit: venv
	$(PY) -m pytest -q tests/unit

oldest: $(OLDEST_STAMP) cluster
	@$(OLDEST_PY) -c 'from importlib.metadata import version as v; print("oldest supported Airflow:", v("apache-airflow"))'
	$(OLDEST_PY) -m pytest -q -p no:cacheprovider tests/unit
	$(OLDEST_PY) -m pytest -q -p no:cacheprovider -m embedded tests/integration

# The documentation site into .jobforge/site (mkdocs.yml); a broken link or reference fails it.
docs: venv
	$(MKDOCS) build --strict

bench: venv cluster
	$(PY) benchmarks/planner.py
	$(PY) benchmarks/node_runner.py
	$(PY) benchmarks/slurm_rpcs.py

# The whole stack in containers (docker/README.md), end to end; as root. `test` runs it last.
docker-test:
	docker/test.sh

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .jobforge
