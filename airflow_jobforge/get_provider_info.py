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
        "integrations": [
            {
                "integration-name": "SLURM",
                "external-doc-url": "https://slurm.schedmd.com/",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "SLURM",
                "python-modules": [
                    "airflow_jobforge.operators.submit",
                    "airflow_jobforge.operators.results",
                    "airflow_jobforge.operators.command",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "SLURM", "python-modules": ["airflow_jobforge.sensors.slurm"]}
        ],
        "triggers": [
            {
                "integration-name": "SLURM",
                "python-modules": [
                    "airflow_jobforge.triggers.slurm",
                    "airflow_jobforge.triggers.queue_slot",
                ],
            }
        ],
        "hooks": [
            {"integration-name": "SLURM", "python-modules": ["airflow_jobforge.hooks.slurm"]}
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_jobforge.hooks.slurm.SlurmHook",
                "connection-type": "slurm",
            }
        ],
    }
