"""What keeps a deferred wait clear of Airflow 3.3's resume race (triggers/resume.py): a
wait whose batch already ended concludes without deferring, a trigger started by a worker's
defer() holds its event a few seconds, and the scheduler preloads the task code."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from airflow_jobforge.airflow_compat import TaskDeferred
from airflow_jobforge.config import SlurmParams
from airflow_jobforge.plugins import JobforgePlugin, preload
from airflow_jobforge.rundir import ResultRecord
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.sensors.slurm import SlurmJobSensor
from airflow_jobforge.slurm.request import request_to_dict
from airflow_jobforge.slurm.script import SubmitRequest
from airflow_jobforge.slurm.states import JobStatus, Outcome
from airflow_jobforge.triggers.queue_slot import QueueSlotTrigger
from airflow_jobforge.triggers.resume import RESUME_HOLD_S, hold
from airflow_jobforge.triggers.slurm import SlurmJobTrigger


class Client:
    """The SLURM client a wait talks to; `state` is what the status query says."""

    def __init__(self, state: str, outcome: Outcome) -> None:
        self.state, self.outcome = state, outcome
        self.calls: list[str] = []

    def status(self, ids, exit_files):
        self.calls.append("status")
        return {
            i: JobStatus(i, self.state, self.outcome, exit_code=0, source="squeue") for i in ids
        }

    def tail_logs(self, path, lines):
        return ""

    def read_results(self, output_dir, batch=None):
        self.calls.append("read_results")
        return {"a": ResultRecord("a", "finished", 0, 0.1, 1.0, 1.1, "g-0000")}

    def append_text(self, path, text):
        self.calls.append("append_text")

    def close(self):
        pass


def _wait(monkeypatch, tmp_path, client, cluster=None, ended=True):
    exit_file = tmp_path / "jf-k.g-0000.t1-7.exit"
    if ended:
        exit_file.write_text("0\n")
    request = SubmitRequest(
        tag="k.g-0000.t1",
        batch=BatchSpec("g-0000", (JobSpec("a", "true"),)),
        slurm=SlurmParams(walltime="5"),
        output_dir=str(tmp_path),
    )
    submitted = {
        "job_id": "7",
        "job_name": "jf-k.g-0000.t1",
        "slurm_dir": str(tmp_path),
        "exit_file": str(exit_file),
        "stdout": str(tmp_path / "out"),
        "stderr": str(tmp_path / "err"),
        "request": request_to_dict(request),
    }
    sensor = SlurmJobSensor(
        task_id="wait", submit_task_id="submit", cluster=cluster or {"backend": "slurm"}
    )
    monkeypatch.setattr(
        SlurmJobSensor, "hook", property(lambda self: SimpleNamespace(get_client=lambda: client))
    )
    ti = SimpleNamespace(try_number=1, xcom_pull=lambda task_ids: submitted, xcom_push=None)
    return sensor, {"ti": ti}


def test_a_wait_whose_batch_already_ended_concludes_without_deferring(monkeypatch, tmp_path):
    client = Client("COMPLETED", Outcome.SUCCEEDED)
    sensor, context = _wait(monkeypatch, tmp_path, client)
    verdict = sensor.execute(context)
    assert verdict["state"] == "COMPLETED" and verdict["job_id"] == "7"
    assert client.calls[0] == "status" and "read_results" in client.calls


def test_a_wait_whose_batch_still_runs_defers_with_its_trigger_holding(monkeypatch, tmp_path):
    client = Client("RUNNING", Outcome.RUNNING)
    sensor, context = _wait(monkeypatch, tmp_path, client, ended=False)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    after = time.time()
    assert client.calls == []  # no exit file: not even a status query
    trigger = deferred.value.trigger
    assert before + RESUME_HOLD_S <= trigger.not_before <= after + RESUME_HOLD_S
    assert trigger.serialize()[1]["not_before"] == trigger.not_before
    # An exit file but a status not yet final (the controller still completing it): defer.
    sensor, context = _wait(monkeypatch, tmp_path, client)
    with pytest.raises(TaskDeferred):
        sensor.execute(context)
    assert client.calls == ["status"]


def test_over_ssh_a_wait_never_checks_before_deferring(monkeypatch, tmp_path):
    """The exit file is on the cluster there: a check would be one more login per batch."""
    client = Client("COMPLETED", Outcome.SUCCEEDED)
    cluster = {"backend": "slurm", "ssh_conn_id": "login", "resolved_": True}
    sensor, context = _wait(monkeypatch, tmp_path, client, cluster=cluster)
    with pytest.raises(TaskDeferred):
        sensor.execute(context)
    assert client.calls == []


def test_a_trigger_in_a_triggerer_holds_its_event_until_the_time_given():
    trigger = SimpleNamespace(task_instance=object())
    until = time.time() + 0.3
    slept = asyncio.run(hold(trigger, until))
    # Not a moment early, however late it got to hold (so no lower bound on `slept`).
    assert time.time() >= until - 0.01
    assert slept <= 0.3


def test_a_trigger_outside_a_triggerer_never_holds():
    """dag.test() runs triggers without a task instance: no scheduler, no race."""
    trigger = SimpleNamespace(task_instance=None)
    started = time.monotonic()
    assert asyncio.run(hold(trigger, time.time() + 60)) == 0
    assert time.monotonic() - started < 30  # a hold would have lasted the minute
    in_triggerer = SimpleNamespace(task_instance=object())
    for holder in (trigger, in_triggerer):
        assert asyncio.run(hold(holder, None)) == 0
        assert asyncio.run(hold(holder, time.time() - 1)) == 0


def test_the_queue_slot_trigger_keeps_its_hold_across_serialization():
    trigger = QueueSlotTrigger({"backend": "slurm"}, "k", "g", "g-0001", 2, not_before=12.5)
    classpath, kwargs = trigger.serialize()
    assert QueueSlotTrigger(**kwargs).not_before == 12.5
    assert SlurmJobTrigger("1", None, {}, not_before=3.0).serialize()[1]["not_before"] == 3.0


def test_the_scheduler_job_preloads_the_task_code_and_a_task_process_does_not(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(preload, "preload", lambda: calls.append("preload"))

    class Job:  # what the scheduler, triggerer and dag-processor build first
        pass

    class TaskRunnerMarker:
        pass

    preload.on_starting(TaskRunnerMarker())
    assert calls == []
    preload.on_starting(Job())
    assert calls == ["preload"]
    monkeypatch.setenv("AIRFLOW__JOBFORGE__PRELOAD", "False")
    preload.on_starting(Job())
    assert calls == ["preload"]
    assert preload in JobforgePlugin.listeners


def test_preloading_imports_what_a_task_imports():
    import sys

    preload.preload()
    for name in ("airflow_jobforge.dag.factory", "airflow_jobforge.sensors.slurm"):
        assert name in sys.modules


def test_a_status_query_that_fails_before_deferring_leaves_it_to_the_trigger(monkeypatch, tmp_path):
    from airflow_jobforge.errors import SlurmError

    class Down(Client):
        def status(self, ids, exit_files):
            self.calls.append("status")
            raise SlurmError("squeue: slurm_load_jobs error: Unable to contact slurm controller")

    client = Down("COMPLETED", Outcome.SUCCEEDED)
    sensor, context = _wait(monkeypatch, tmp_path, client)
    with pytest.raises(TaskDeferred):
        sensor.execute(context)
    assert client.calls == ["status"]
