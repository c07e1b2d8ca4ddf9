"""airflow-jobforge: batches of shell-command jobs on SLURM, driven by Apache Airflow 3."""

from __future__ import annotations

__version__ = "0.1.0"
