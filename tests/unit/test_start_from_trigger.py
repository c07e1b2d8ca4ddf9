"""A wait's first try starts in the triggerer (no worker execution): its trigger reads the
job from the submit task's XCom; a later try, or a job it cannot read, goes to a worker."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.execution_time.xcom import XCom

from airflow_jobforge.airflow_compat import TaskDeferred
from airflow_jobforge.config import JobConfiguration
from airflow_jobforge.dag.factory import build_dag
from airflow_jobforge.sensors.slurm import SlurmJobSensor
from airflow_jobforge.slurm.states import JobStatus, Outcome
from airflow_jobforge.triggers.slurm import SlurmJobTrigger
from tests.airflow_versions import DagSerialization

SUBMITTED = {
    "job_id": "77",
    "exit_file": "/o/slurm/jf-k.g-0000.t1-77.exit",
    "stdout": "/o/slurm/jf-k.g-0000.t1-77.out",
    "stderr": "/o/slurm/jf-k.g-0000.t1-77.err",
    "request": {"batch": {"batch": "g-0000", "jobs": [{"name": "a"}, {"name": "b"}]}},
}


def config() -> JobConfiguration:
    return JobConfiguration.model_validate(
        {
            "jobs": [{"name": f"j{i}", "command": "true"} for i in range(4)],
            "submission_groups": [
                {"name": "g", "slurm": {"walltime": "5"}, "batching": {"per_node_batch_size": 2}}
            ],
        }
    )


def test_the_factorys_waits_start_in_the_triggerer_with_their_submit_task_named():
    dag = DagSerialization.from_dict(
        DagSerialization.to_dict(
            build_dag(config(), "d", backend="slurm", output_dir="/o", job_tasks=False)
        )
    )
    wait = dag.get_task("g.wait_0001")
    assert wait.start_from_trigger
    args = wait.start_trigger_args
    assert args.trigger_cls == "airflow_jobforge.triggers.slurm.SlurmJobTrigger"
    assert args.next_method == "execute_complete"
    assert "g.submit_0001" in json.dumps(args.trigger_kwargs)


def test_a_poking_wait_does_not_start_in_the_triggerer():
    dag = build_dag(config(), "d", backend="slurm", output_dir="/o", deferrable=False)
    assert not dag.get_task("g.wait_0000").start_from_trigger


class OneStatusPoller:
    def __init__(self) -> None:
        self.watched: list[tuple[str, str | None]] = []
        self.client = None

    async def watch(self, job_id, exit_file):
        self.watched.append((job_id, exit_file))
        yield JobStatus(job_id, "COMPLETED", Outcome.SUCCEEDED, exit_code=0)


def started(monkeypatch, try_number: int, submitted: dict | None) -> tuple[list, list, Any]:
    monkeypatch.setenv(
        "AIRFLOW_CONN_HPC", json.dumps({"conn_type": "slurm", "extra": {"python": "/opt/py"}})
    )
    reads: list[dict] = []

    def get_one(**query):
        reads.append(query)
        return submitted

    monkeypatch.setattr(XCom, "get_one", staticmethod(get_one))
    trigger = SlurmJobTrigger(
        None, None, {"backend": "slurm", "slurm_conn_id": "hpc"}, submit_task_id="g.submit_0000"
    )
    trigger.task_instance = SimpleNamespace(
        dag_id="d", task_id="g.wait_0000", run_id="r", map_index=-1, try_number=try_number
    )
    poller = OneStatusPoller()
    monkeypatch.setattr(trigger, "_poller", lambda: poller)

    async def events() -> list:
        return [event async for event in trigger.run()]

    return [e.payload for e in asyncio.run(events())], reads, (trigger, poller)


def test_a_trigger_the_scheduler_started_waits_for_the_job_the_submit_task_pushed(monkeypatch):
    events, reads, (trigger, poller) = started(monkeypatch, 1, SUBMITTED)
    assert reads == [
        {
            "key": "return_value",
            "dag_id": "d",
            "task_id": "g.submit_0000",
            "run_id": "r",
            "map_index": -1,
        }
    ]
    assert poller.watched == [("77", SUBMITTED["exit_file"])]
    [event] = events
    assert (event["job_id"], event["state"], event["outcome"]) == ("77", "COMPLETED", "succeeded")
    # The echo is the submit's XCom with the batch by job names, as a worker's defer() gives.
    assert event["echo"]["request"]["batch"] == {"batch": "g-0000", "job_names": ["a", "b"]}
    # The slurm connection is resolved in the triggerer, as the worker did before deferring.
    assert trigger.cluster["resolved_"] and trigger.cluster["python"] == "/opt/py"


def test_a_later_try_is_left_to_the_worker_which_may_resubmit(monkeypatch):
    events, reads, (_, poller) = started(monkeypatch, 2, SUBMITTED)
    assert reads == [] and poller.watched == []
    assert events == [{"start": "try 2: an earlier try's job may need resubmitting"}]


def test_a_submit_without_a_job_in_its_xcom_is_left_to_the_worker(monkeypatch):
    events, _, (_, poller) = started(monkeypatch, 1, None)
    assert poller.watched == []
    assert events == [{"start": "no SLURM job in the XCom of g.submit_0000"}]


def test_the_worker_taking_over_runs_the_waits_execute_and_defers_as_before():
    sensor = SlurmJobSensor(
        task_id="wait", submit_task_id="submit", cluster={"backend": "slurm", "resolved_": True}
    )
    context = {"ti": SimpleNamespace(try_number=1, xcom_pull=lambda task_ids: SUBMITTED)}
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete(context, {"start": "no SLURM job in the XCom"})
    trigger = deferred.value.trigger
    assert (trigger.job_id, trigger.submit_task_id) == ("77", None)
    assert trigger.echo["request"]["batch"]["job_names"] == ["a", "b"]


def test_a_wait_pushes_no_return_value_nothing_reads():
    dag = build_dag(config(), "d", backend="slurm", output_dir="/o")
    assert dag.get_task("g.wait_0000").do_xcom_push is False
    assert dag.get_task("g.submit_0000").do_xcom_push is True
