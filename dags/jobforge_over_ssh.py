"""Submit to a remote SLURM cluster over SSH (an Airflow SSH connection `hpc_login`).

The output dir is a path on the cluster; the nodes need a Python with airflow-jobforge
importable (`python`, or `pythonpath` pointing at a copy of the package)."""

from __future__ import annotations

from pathlib import Path

from airflow_jobforge.config import load_config
from airflow_jobforge.dag import build_dag

dag = build_dag(
    load_config(Path(__file__).parent.parent / "examples/configs/pipeline.json"),
    "jobforge_pipeline_ssh",
    backend="slurm",
    ssh_conn_id="hpc_login",
    output_dir="/scratch/jobforge/pipeline",
    python="/opt/venvs/jobforge/bin/python",
    tags=["jobforge", "example", "ssh"],
)
