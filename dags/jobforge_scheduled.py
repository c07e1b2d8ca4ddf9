"""A recurring batch: the config's jobs every day at 02:00; each run has its own output dir."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow_jobforge.config import load_config
from airflow_jobforge.dag import build_dag

dag = build_dag(
    load_config(Path(__file__).parent.parent / "examples/configs/pipeline.json"),
    "jobforge_nightly",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    backend="local",
    tags=["jobforge", "example", "scheduled"],
)
