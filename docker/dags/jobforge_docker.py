"""The container stack's own DAG (docker/test.sh triggers it): two exclusive batches of the
`sims` group, one per compute node of the stack, then a `report` batch; submitted over SSH
to the login container, results on the shared /scratch/jobforge volume."""

from __future__ import annotations

from pathlib import Path

from airflow_jobforge.config import load_config
from airflow_jobforge.dag.factory import build_dag

dag = build_dag(
    load_config(Path(__file__).resolve().parent / "jobforge_docker.json"),
    "jobforge_docker",
    backend="slurm",
    ssh_conn_id="hpc_login",
    output_dir="/scratch/jobforge/docker",
    python="/opt/venvs/jobforge/bin/python",
    tags=["jobforge", "example", "ssh", "docker"],
)
