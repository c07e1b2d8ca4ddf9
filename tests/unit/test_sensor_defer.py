from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

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
