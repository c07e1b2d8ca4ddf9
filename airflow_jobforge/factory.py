"""The import path of DAG files written before `airflow_jobforge.dag` existed.

`from airflow_jobforge.factory import build_dag` keeps working; new DAG files import from
`airflow_jobforge.dag`, the names' one stable home.
"""

from airflow_jobforge.dag import (
    DagOptions,
    JobForgeTaskGroup,
    build_dag,
    build_render_dag,
    config_errors,
    dag_id_for,
    load_dags,
    raise_config_errors,
)

__all__ = [
    "DagOptions",
    "JobForgeTaskGroup",
    "build_dag",
    "build_render_dag",
    "config_errors",
    "dag_id_for",
    "load_dags",
    "raise_config_errors",
]
