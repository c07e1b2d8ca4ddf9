from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from airflow_jobforge.airflow_compat import TaskDeferred
from airflow_jobforge.sensors.slurm import SlurmJobSensor
from airflow_jobforge.triggers.slurm import SlurmJobTrigger


def test_the_sensor_defers_with_connection_settings_resolved_for_the_triggerer(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_HPC",
        json.dumps({"conn_type": "slurm", "extra": {"ssh_conn_id": "login", "python": "/opt/py"}}),
    )
    job = {"job_id": "42", "exit_file": "/o/slurm/jf-x-42.exit", "stdout": "/o/x.out"}
    sensor = SlurmJobSensor(
        task_id="wait",
        submit_task_id="submit",
        cluster={"backend": "slurm", "slurm_conn_id": "hpc"},
    )
    context = {"ti": SimpleNamespace(try_number=1, xcom_pull=lambda task_ids: job)}
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, SlurmJobTrigger)
    assert (trigger.job_id, trigger.echo) == ("42", job)
    assert trigger.cluster["resolved_"] and trigger.cluster["ssh_conn_id"] == "login"
    assert deferred.value.method_name == "execute_complete"


@pytest.mark.parametrize("stale_accounting", [False, True])
def test_a_retry_resubmits_when_the_jobs_id_now_names_another_job(monkeypatch, stale_accounting):
    """Seen after kill -9 of slurmctld: the restarted controller purged the unsaved job and
    gave its id to the next submission (another batch's). The retry must not adopt that,
    even where accounting still lists our lost job under that id (seen in CI)."""
    from airflow_jobforge.config import SlurmParams
    from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
    from airflow_jobforge.slurm.client import SubmittedJob
    from airflow_jobforge.slurm.request import request_to_dict
    from airflow_jobforge.slurm.script import SubmitRequest
    from airflow_jobforge.slurm.states import JobStatus, Outcome

    request = SubmitRequest(
        tag="k.g-0000.t1",
        batch=BatchSpec("g-0000", (JobSpec("a", "true"),)),
        slurm=SlurmParams(walltime="5"),
        output_dir="/o",
    )
    submitted = {
        "job_id": "2254",
        "job_name": "jf-k.g-0000.t1",
        "slurm_dir": "/o/slurm",
        "exit_file": "/o/slurm/jf-k.g-0000.t1-2254.exit",
        "request": request_to_dict(request),
    }
    owners = {"k.g-0001.w2": "2254"}  # the id now belongs to another batch's resubmission
    accounting = {"k.g-0000.t1": "2254"} if stale_accounting else {}  # sacct: still ours
    submits: list[str] = []

    class Client:
        def find(self, tag, deep=True):
            return owners.get(tag) or (accounting.get(tag) if deep else None)

        def status(self, ids, exit_files):
            return {i: JobStatus(i, "RUNNING", Outcome.RUNNING, source="squeue") for i in ids}

        def submit(self, req, adopt):
            submits.append(req.tag)
            return SubmittedJob("2260", f"jf-{req.tag}", "/o/slurm")

        def close(self):
            pass

    sensor = SlurmJobSensor(task_id="wait", submit_task_id="submit", cluster={"backend": "slurm"})
    monkeypatch.setattr(
        SlurmJobSensor, "hook", property(lambda self: SimpleNamespace(get_client=Client))
    )
    monkeypatch.setattr("airflow_jobforge.sensors.slurm.context_run_key", lambda context: "k")
    pull = lambda task_ids: submitted  # noqa: E731
    ti = SimpleNamespace(try_number=2, max_tries=sensor.retries, xcom_pull=pull)
    job = sensor._current_job({"ti": ti})
    assert submits == ["k.g-0000.w2"] and job["job_id"] == "2260"
