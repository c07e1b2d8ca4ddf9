"""Every config in a folder becomes its own DAG (`jobforge_<file stem>`).

A broken config becomes a failing placeholder DAG carrying its error; the others load."""

from __future__ import annotations

import os
from pathlib import Path

from airflow_jobforge.factory import load_dags

FOLDER = os.environ.get("JOBFORGE_CONFIG_FOLDER",
                        str(Path(__file__).parent.parent / "examples/configs"))

load_dags(f"{FOLDER}/*.json", globals(), backend="local")
