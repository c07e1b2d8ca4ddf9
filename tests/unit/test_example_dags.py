"""The example DAG files users copy must import and give valid DAGs with unique ids."""

from __future__ import annotations

import runpy
from collections import Counter
from pathlib import Path

import pytest
from airflow.sdk import DAG

from tests.airflow_versions import bundle_dag_bag

DAGS_FOLDER = Path(__file__).parents[2] / "dags"
DAGS = sorted(DAGS_FOLDER.glob("*.py"))
NO_DAG = {"jobforge_config_errors.py"}  # reports broken configs as its import error only


@pytest.mark.parametrize("path", DAGS, ids=[p.stem for p in DAGS])
def test_example_dag_file_builds_valid_dags(path):
    namespace = runpy.run_path(str(path))
    dags = [v for v in namespace.values() if isinstance(v, DAG)]
    if path.name in NO_DAG:
        assert not dags
        return
    assert dags, f"{path.name} defines no DAG"
    for dag in dags:
        dag.validate()
        assert "config_error" not in dag.task_dict, dag.description


def test_the_dags_folder_loads_in_airflow_without_errors_and_with_unique_dag_ids():
    """As the dag-processor sees it, file by file: a DagBag may keep one of two DAGs of the
    same id without a word, so the ids are counted across files here."""
    ids: Counter[str] = Counter()
    for path in DAGS:
        bag = bundle_dag_bag(path, DAGS_FOLDER, "examples")
        assert bag.import_errors == {}, path.name
        assert bool(bag.dags) != (path.name in NO_DAG), path.name
        ids.update(list(bag.dags))
    assert [dag_id for dag_id, n in ids.items() if n > 1] == []
    assert {"jobforge_pipeline", "jobforge_folder_pipeline", "jobforge_folder_sweep"} <= set(ids)
