from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Airflow reads its home on first import: give the test session its own, never ~/airflow.
_HOME = tempfile.mkdtemp(prefix="jobforge-test-airflow-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)  # one per session, not one left per run
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(_HOME, "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")


@pytest.fixture(autouse=True)
def _isolated_registry(tmp_path, monkeypatch):
    """Every test gets its own extension registry file, never the user's."""
    monkeypatch.setenv("JOBFORGE_REGISTRY", str(tmp_path / "registry.json"))
