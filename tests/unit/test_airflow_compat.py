"""The Airflow versions jobforge supports: the oldest minor in words, never a traceback, and
the names that moved between 3.1 and 3.3 resolving to the classes this Airflow's task runner
catches. `make oldest` runs this file against Airflow 3.1 as well."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest

from airflow_jobforge import airflow_compat
from airflow_jobforge.cli.main import main
from airflow_jobforge.errors import JobForgeError


def test_the_installed_version_is_read_and_supported():
    have = airflow_compat.airflow_version()
    assert ".".join(map(str, have)).startswith(version("apache-airflow-core")[:3])
    assert have[:2] >= airflow_compat.OLDEST_SUPPORTED
    airflow_compat.require_supported_airflow()  # no error here


def test_an_airflow_too_old_is_named_with_both_versions(monkeypatch):
    monkeypatch.setattr(airflow_compat, "airflow_version", lambda: (3, 0, 6))
    with pytest.raises(JobForgeError) as err:
        airflow_compat.require_supported_airflow()
    assert str(err.value) == "airflow-jobforge needs Airflow 3.1 or newer; this is Airflow 3.0.6"
    with pytest.raises(JobForgeError, match=r"spark needs Airflow 9\.1 or newer"):
        airflow_compat.require_airflow((9, 1), "spark")


def test_a_dag_file_on_an_old_airflow_fails_in_words_before_any_import(monkeypatch):
    import airflow_jobforge.dag as dag_package

    monkeypatch.setattr(airflow_compat, "airflow_version", lambda: (3, 0, 6))
    with pytest.raises(JobForgeError, match="needs Airflow 3.1"):
        dag_package.build_dag  # noqa: B018 - the lazy export is where the check sits
    assert dag_package.DagOptions  # pure names stay importable (no Airflow in them)


def test_jobforge_run_on_an_old_airflow_exits_2_with_one_line(monkeypatch, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"jobs": [{"name": "a", "command": "true"}]}))
    monkeypatch.setattr(airflow_compat, "airflow_version", lambda: (3, 0, 6))
    code = main(["run", str(config), "--backend", "local", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "needs Airflow 3.1 or newer; this is Airflow 3.0.6" in err
    assert "Traceback" not in err


def test_the_task_exceptions_are_the_ones_this_airflows_task_runner_catches():
    """The task runner imports them (some inside its functions) from one module or the other
    by version: ours must be those very classes, or a skip would read as a failure."""
    import importlib
    import inspect
    import re

    from airflow.sdk.execution_time import task_runner

    imported_from: dict[str, str] = {}
    pattern = r"from (airflow[.\w]*) import (?:\(([^)]*)\)|([^\n(]+))"
    for module, block, line in re.findall(pattern, inspect.getsource(task_runner)):
        for name in re.findall(r"\w+", block or line):
            imported_from.setdefault(name, module)
    for name in ("AirflowFailException", "AirflowSkipException", "AirflowRescheduleException"):
        caught = getattr(importlib.import_module(imported_from[name]), name)
        assert getattr(airflow_compat, name) is caught, name
    assert issubclass(airflow_compat.AirflowFailException, airflow_compat.AirflowException)
    with pytest.raises(AttributeError):
        airflow_compat.NoSuchName  # noqa: B018


def test_the_backoff_doubles_in_this_airflows_own_terms():
    from airflow.sdk.bases.operator import BASEOPERATOR_ARGS_EXPECTED_TYPES

    value = airflow_compat.exponential_backoff(2.0)
    expected = BASEOPERATOR_ARGS_EXPECTED_TYPES["retry_exponential_backoff"]
    assert isinstance(value, expected)
    assert value is True if expected is bool else value == 2.0
