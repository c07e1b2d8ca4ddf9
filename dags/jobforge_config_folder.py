"""Every config in a folder becomes its own DAG (`jobforge_folder_<file stem>`).

A task's worker builds only its own config's DAG (Airflow's parsing context), from a cached
render: a folder holding a 100,000-job config costs a task of another DAG nothing, and that
config's own tasks a fraction of a second once the cache is warm.

A broken config becomes a failing placeholder DAG ("BROKEN CONFIG ...") carrying its error;
the others load. jobforge_config_errors.py makes the same errors Airflow import errors."""

from __future__ import annotations

import os
from pathlib import Path

from airflow_jobforge.dag import load_dags

FOLDER = os.environ.get(
    "JOBFORGE_CONFIG_FOLDER", str(Path(__file__).parent.parent / "examples/configs")
)

load_dags(f"{FOLDER}/*.json", globals(), dag_id_prefix="jobforge_folder_", backend="local")
