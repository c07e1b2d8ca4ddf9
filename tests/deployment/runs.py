"""Steps the deployment tests share: run a DAG through the REST API and read what it left on
the cluster (accounting by the run's tag, result records in the run's output dir)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from airflow_jobforge.rundir import ResultRecord, collect_results, read_records
from airflow_jobforge.rundir.manifest import safe_run_id
from airflow_jobforge.slurm.tags import run_key
from tests.slurm_tools import AccountedJob, sacct_jobs

from .workload import SHARED


def run_dag(deployment: Any, dag_id: str, conf: dict | None = None, timeout: float = 300) -> tuple[
    str, str
]:
    """Trigger `dag_id` and wait for the run to finish: (run id, final state)."""
    run_id = deployment.trigger(dag_id, conf=conf)
    return run_id, deployment.wait_run(dag_id, run_id, timeout=timeout)


def run_dir(dag_id: str, run_id: str, ssh: bool = False) -> Path:
    """Where the factory's tasks wrote this run's records (see workload.DAG_FILE_TEXT)."""
    del dag_id  # every DAG of the workload shares one output dir; runs have their own
    return SHARED / ("out-ssh" if ssh else "out") / safe_run_id(run_id)


def slurm_jobs(dag_id: str, run_id: str) -> list[AccountedJob]:
    """Every SLURM job jobforge submitted for this run: their names carry the run's key."""
    deadline = time.monotonic() + 30  # slurmdbd may lag the controller by a few seconds
    prefix = f"jf-{run_key(dag_id, run_id)}."
    while True:
        jobs = sacct_jobs(prefix)
        if all(j.state not in ("PENDING", "RUNNING") for j in jobs) or time.monotonic() > deadline:
            return jobs
        time.sleep(1)


def submissions_per_batch(jobs: list[AccountedJob], dag_id: str, run_id: str) -> Counter:
    """batch -> how many SLURM jobs it became (tag: <key>.<batch>.<kind><try>)."""
    prefix = f"jf-{run_key(dag_id, run_id)}."
    return Counter(j.name.removeprefix(prefix).split(".")[0] for j in jobs)


def record_lines(directory: Path) -> Counter:
    """job name -> how many records the run's result files hold for it."""
    return Counter(
        r.name for path in (directory / "results").glob("*.jsonl") for r in read_records(path)
    )


def records(directory: Path) -> dict[str, ResultRecord]:
    return collect_results(directory)


def wait_states(
    deployment: Any, dag_id: str, run_id: str, predicate: Any, timeout: float = 180
) -> dict[str, str | None]:
    """Until the run's task states satisfy `predicate`; returns them."""
    deadline = time.monotonic() + timeout
    while True:
        states = deployment.task_states(dag_id, run_id)
        if predicate(states):
            return states
        assert time.monotonic() < deadline, f"{dag_id}/{run_id}: states stuck at {states}"
        time.sleep(1)
