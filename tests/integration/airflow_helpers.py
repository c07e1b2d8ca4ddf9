"""Real Airflow for the tests: runs through `jobforge run`'s own path (dag.test on the SQLite
metadata DB), and a UI-style clear of task instances followed by the scheduler's loop."""

from __future__ import annotations

import os
from typing import Any

from airflow_jobforge.embedded.run import run_config


def run(config_file: str, **options: Any):
    return run_config(config_file, airflow_home=os.environ["AIRFLOW_HOME"], **options)


def task_states(dag_id: str) -> dict[str, str]:
    """Task id -> state of the latest run of `dag_id`."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        dr = (
            session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        )
        return {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}


def clear_and_resume(dag: Any, task_ids: list[str]) -> str:
    """What a user's 'clear' in the UI and the scheduler then do, on the latest run of `dag`:
    the task instances go back to no state, get scheduled with try_number + 1, and run (with
    their deferrals) like dag.test() runs them. Returns the run's final state."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import clear_task_instances
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    from tests.airflow_versions import DagSerialization

    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    with create_session() as session:
        dr = (
            session.query(DagRun)
            .filter(DagRun.dag_id == dag.dag_id)
            .order_by(DagRun.id.desc())
            .first()
        )
        dr.dag = scheduler_dag
        tis = [ti for ti in dr.get_task_instances(session=session) if ti.task_id in task_ids]
        clear_task_instances(tis, session)
        dr.state = DagRunState.RUNNING
        session.commit()
        idle = 0
        while dr.state == DagRunState.RUNNING:
            session.expire_all()
            schedulable, _ = dr.update_state(session=session)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            if not schedulable:
                idle += 1
                assert idle < 5, "nothing schedulable but the run is still running"
                continue
            for ti in schedulable:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
        return str(dr.state)


def backend_options(kind: str, cluster) -> dict:
    """`run`'s options for a backend: local, the SLURM CLI, or SSH to the loopback sshd (as
    its test user, with the repo copied where that user can read it)."""
    if kind == "local":
        return {"backend": "local"}
    if kind == "slurm":
        return {"backend": "slurm"}
    from .conftest import SSH_CONN_ID

    return {
        "backend": "slurm",
        "ssh_conn_id": SSH_CONN_ID,
        "python": "/usr/bin/python3",
        "pythonpath": str(cluster.shared / "pkg"),
    }
