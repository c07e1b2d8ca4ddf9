"""The example DAG files users copy must import and give valid DAGs."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from airflow.sdk import DAG

DAGS = sorted((Path(__file__).parents[2] / "dags").glob("*.py"))


@pytest.mark.parametrize("path", DAGS, ids=[p.stem for p in DAGS])
def test_example_dag_file_builds_valid_dags(path):
    namespace = runpy.run_path(str(path))
    dags = [v for v in namespace.values() if isinstance(v, DAG)]
    assert dags, f"{path.name} defines no DAG"
    for dag in dags:
        dag.validate()
        assert "config_error" not in dag.task_dict, dag.description
