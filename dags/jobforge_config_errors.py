"""Broken configs of jobforge_config_folder.py's folder as Airflow import errors of this file.

The UI's import-errors banner, `GET /api/v2/importErrors` and `airflow dags
list-import-errors` then name each broken config, its job and the reason. This file defines
no DAG on purpose: Airflow 3 marks every DAG of a file with an import error stale (hidden,
never scheduled), so the error must not belong to the file whose good DAGs should run."""

from __future__ import annotations

import os
from pathlib import Path

from airflow_jobforge.dag import raise_config_errors

FOLDER = os.environ.get(
    "JOBFORGE_CONFIG_FOLDER", str(Path(__file__).parent.parent / "examples/configs")
)

raise_config_errors(f"{FOLDER}/*.json")
