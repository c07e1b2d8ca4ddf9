"""Airflow provider metadata (entry point `apache_airflow_provider`)."""

from __future__ import annotations

from typing import Any

from airflow_jobforge import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-jobforge",
        "name": "JobForge",
        "description": "Run large batches of shell-command jobs on SLURM clusters.",
        "versions": [__version__],
    }
