"""Config or pipeline -> DAG: the pure render (`render`), its disk cache (`render_cache`), the
options (`options`), the Airflow factory (`factory`), pipelines (`pipeline`) and the DAG
files' folder loader (`loading`).

The names DAG files use live here, one stable home: `from airflow_jobforge.dag import
build_dag, build_pipeline_dag, load_dags, JobForgeTaskGroup, DagOptions`. They are loaded on
first use (PEP 562): the render, the cache and the options are pure, and `jobforge` imports
them before Airflow may be imported (its AIRFLOW_HOME is set first), so importing this
package must not import Airflow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DagOptions": "airflow_jobforge.dag.options",
    "dag_id_for": "airflow_jobforge.dag.options",
    "JobForgeTaskGroup": "airflow_jobforge.dag.factory",
    "build_dag": "airflow_jobforge.dag.factory",
    "build_render_dag": "airflow_jobforge.dag.factory",
    "build_pipeline_dag": "airflow_jobforge.dag.pipeline",
    "config_errors": "airflow_jobforge.dag.loading",
    "load_dags": "airflow_jobforge.dag.loading",
    "raise_config_errors": "airflow_jobforge.dag.loading",
    "stage_asset": "airflow_jobforge.operators.stage",
}

__all__ = sorted(_EXPORTS)
_PURE = {"airflow_jobforge.dag.options"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _EXPORTS[name] not in _PURE:  # an Airflow too old fails here in words, not an import
        from airflow_jobforge.airflow_compat import require_supported_airflow

        require_supported_airflow()
    return getattr(importlib.import_module(_EXPORTS[name]), name)
