"""One config -> one DAG. Copy into your DAGs folder and point CONFIG at your file.

Backend `slurm` submits with the SLURM CLI on the worker (or over SSH, see
jobforge_over_ssh.py); `local` runs batches on the worker itself (no SLURM)."""

from __future__ import annotations

import os
from pathlib import Path

from airflow_jobforge.config import load_config
from airflow_jobforge.dag import build_dag

CONFIG = os.environ.get("JOBFORGE_EXAMPLE_CONFIG",
                        str(Path(__file__).parent.parent / "examples/configs/pipeline.json"))

dag = build_dag(
    load_config(CONFIG),
    "jobforge_pipeline",
    backend=os.environ.get("JOBFORGE_EXAMPLE_BACKEND", "local"),
    tags=["jobforge", "example"],
)
