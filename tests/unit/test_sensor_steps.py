"""Which job a later try of the wait follows (`SlurmJobSensor._current_job`), without SLURM:
a recording client stands in, so each scenario pins the client calls in their order, the log
lines and the events (tests/integration/test_triggers.py runs some of them on a cluster)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_jobforge.airflow_compat import AirflowFailException
from airflow_jobforge.config import SlurmParams
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.sensors import slurm as sensor_module
from airflow_jobforge.sensors.slurm import SlurmJobSensor
from airflow_jobforge.slurm.client import SubmittedJob
from airflow_jobforge.slurm.request import request_to_dict
from airflow_jobforge.slurm.script import SubmitRequest
from airflow_jobforge.slurm.states import JobStatus, Outcome

JOB_ID = "2254"
TAG = "k.g-0000.t1"
EVENTS = "/o/events/airflow-g-0000.jsonl"


def submitted() -> dict[str, Any]:
    request = SubmitRequest(
        tag=TAG,
        batch=BatchSpec("g-0000", (JobSpec("a", "true"),)),
        slurm=SlurmParams(walltime="5"),
        output_dir="/o",
    )
    return {
        "job_id": JOB_ID,
        "job_name": f"jf-{TAG}",
        "slurm_dir": "/o/slurm",
        "exit_file": f"/o/slurm/jf-{TAG}-{JOB_ID}.exit",
        "stdout": "/o/slurm/out",
        "request": request_to_dict(request),
    }


class Client:
    """Answers as told and records every call."""

    def __init__(self, status: JobStatus, owners: dict[tuple[str, bool], str]) -> None:
        self._status, self._owners = status, owners
        self.calls: list[tuple[Any, ...]] = []

    def find(self, tag: str, *, deep: bool = True) -> str | None:
        self.calls.append(("find", tag, deep))
        return self._owners.get((tag, deep))

    def status(self, ids: list[str], exit_files: dict[str, str]) -> dict[str, JobStatus]:
        self.calls.append(("status", list(ids), dict(exit_files)))
        return {i: self._status for i in ids}

    def job_nodes(self, job_id: str, states: Any = None) -> list[str]:
        self.calls.append(("job_nodes", job_id))
        return ["n1"]

    def partition_nodes(self, partition: str | None) -> list[str]:
        self.calls.append(("partition_nodes", partition))
        return ["n1", "n2"]

    def submit(self, request: SubmitRequest, *, adopt: bool = True) -> SubmittedJob:
        self.calls.append(("submit", request.tag, adopt, request.slurm.extra))
        return SubmittedJob("2260", f"jf-{request.tag}", "/o/slurm")

    def read_results(self, output_dir: str, batch: str | None = None) -> dict[str, Any]:
        self.calls.append(("read_results", output_dir, batch))
        return {}

    def append_text(self, path: str, text: str) -> None:
        self.calls.append(("append_text", path, [json.loads(line) for line in text.splitlines()]))

    def close(self) -> None:
        self.calls.append(("close",))


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(("info", msg % args))

    def warning(self, msg: str, *args: Any) -> None:
        self.lines.append(("warning", msg % args))


def run(monkeypatch, client: Client, try_number: int = 2, **kwargs: Any):
    sensor = SlurmJobSensor(
        task_id="wait", submit_task_id="submit", cluster={"backend": "slurm"}, **kwargs
    )
    log = Log()
    monkeypatch.setattr(
        SlurmJobSensor, "hook", property(lambda self: SimpleNamespace(get_client=lambda: client))
    )
    monkeypatch.setattr(SlurmJobSensor, "log", property(lambda self: log))
    monkeypatch.setattr(sensor_module, "context_run_key", lambda context: "k")
    job = submitted()
    ti = SimpleNamespace(
        try_number=try_number, max_tries=sensor.retries, xcom_pull=lambda task_ids: job
    )
    return sensor, {"ti": ti}, log


def status(state: str, outcome: Outcome, source: str) -> JobStatus:
    return JobStatus(JOB_ID, state, outcome, source=source)


def test_a_restart_of_the_try_adopts_its_own_resubmission(monkeypatch):
    client = Client(status("RUNNING", Outcome.RUNNING, "squeue"), {("k.g-0000.w2", True): "2260"})
    sensor, context, _ = run(monkeypatch, client)
    job = sensor._current_job(context)
    assert (job["job_id"], job["adopted"], job["job_name"]) == ("2260", True, "jf-k.g-0000.w2")
    assert client.calls == [("find", "k.g-0000.w2", True), ("close",)]


def test_a_running_job_whose_id_the_queue_still_gives_our_tag_is_adopted(monkeypatch):
    client = Client(status("RUNNING", Outcome.RUNNING, "squeue"), {(TAG, False): JOB_ID})
    sensor, context, log = run(monkeypatch, client)
    assert sensor._current_job(context) == submitted()
    assert client.calls == [
        ("find", "k.g-0000.w2", True),
        ("status", [JOB_ID], {JOB_ID: submitted()["exit_file"]}),
        ("find", TAG, False),
        ("close",),
    ]
    assert log.lines == []


def test_an_exit_file_is_our_jobs_own_its_final_outcome_is_reported(monkeypatch):
    client = Client(status("FAILED", Outcome.FAILED, "exit_file"), {})
    sensor, context, _ = run(monkeypatch, client)
    assert sensor._current_job(context) == submitted()
    assert ("find", TAG, True) not in client.calls and ("find", TAG, False) not in client.calls


def test_a_job_only_accounting_knows_is_lost_and_resubmitted_without_asking_whose(monkeypatch):
    client = Client(status("RUNNING", Outcome.UNKNOWN, "sacct"), {})
    sensor, context, log = run(monkeypatch, client)
    job = sensor._current_job(context)
    assert job["job_id"] == "2260" and not job["adopted"]
    assert [c[0] for c in client.calls] == ["find", "status", "submit", "append_text", "close"]
    assert log.lines == [("info", "resubmitted batch g-0000 after RUNNING as SLURM job 2260")]


def test_a_node_failure_resubmits_without_the_failed_node_then_writes_the_event(monkeypatch):
    client = Client(status("NODE_FAIL", Outcome.RETRYABLE, "sacct"), {(TAG, True): JOB_ID})
    sensor, context, log = run(monkeypatch, client)
    job = sensor._current_job(context)
    assert (job["job_id"], job["attempt"], job["request"]["tag"]) == ("2260", None, "k.g-0000.w2")
    calls = client.calls
    assert calls[:5] == [
        ("find", "k.g-0000.w2", True),
        ("status", [JOB_ID], {JOB_ID: submitted()["exit_file"]}),
        ("find", TAG, True),
        ("job_nodes", JOB_ID),
        ("partition_nodes", None),
    ]
    assert calls[5] == ("submit", "k.g-0000.w2", False, ("--exclude=n1",))
    assert calls[6][:2] == ("append_text", EVENTS) and calls[7:] == [("close",)]
    [event] = calls[6][2]
    assert (event["type"], event["hpc_job_id"], event["message"]) == (
        "batch_resubmitted",
        "2260",
        "after NODE_FAIL of SLURM job 2254, excluding node(s) n1",
    )
    assert event["data"] == {
        "previous_job_id": JOB_ID,
        "state": "NODE_FAIL",
        "excluded_nodes": ["n1"],
    }
    assert log.lines == [
        ("info", "resubmitted batch g-0000 after NODE_FAIL as SLURM job 2260, excluding node(s) n1")
    ]


def test_no_resubmission_left_completes_the_records_and_fails_without_retries(monkeypatch):
    client = Client(
        status("NODE_FAIL", Outcome.RETRYABLE, "sacct"),
        {("k.g-0000.w2", True): "2258", ("k.g-0000.w2", False): "2258"},
    )
    sensor, context, log = run(monkeypatch, client, try_number=3, max_resubmits=1)
    with pytest.raises(AirflowFailException) as failed:
        sensor._current_job(context)
    assert str(failed.value) == (
        "batch g-0000 ended NODE_FAIL after 1 resubmission(s): not resubmitted again"
    )
    names = [c[0] for c in client.calls]
    assert names == [
        "find",
        "find",
        "status",
        "find",
        "read_results",
        "append_text",
        "append_text",
        "close",
    ]
    assert client.calls[:4] == [
        ("find", "k.g-0000.w3", True),
        ("find", "k.g-0000.w2", True),
        ("status", ["2258"], {"2258": "/o/slurm/jf-k.g-0000.w2-2258.exit"}),
        ("find", "k.g-0000.w2", True),
    ]
    assert client.calls[5][1] == "/o/results/g-0000.completed.jsonl"
    assert client.calls[6][1] == EVENTS and client.calls[6][2][0]["type"] == "records_completed"
    assert log.lines == [
        ("info", "1 job(s) of batch g-0000 had no result record: recorded missing")
    ]


@pytest.mark.parametrize(
    ("outcome", "source", "owner", "lost", "asked"),
    [
        (Outcome.UNKNOWN, "sacct", JOB_ID, True, None),
        (Outcome.RUNNING, "exit_file", None, False, None),
        (Outcome.RUNNING, "squeue", JOB_ID, False, False),
        (Outcome.RUNNING, "squeue", "9999", True, False),
        (Outcome.RUNNING, "sacct", JOB_ID, False, True),
        (Outcome.UNKNOWN, "none", None, True, True),
    ],
)
def test_lost_asks_whose_the_id_is_of_the_source_that_answered(outcome, source, owner, lost, asked):
    client = Client(status("X", outcome, source), {(TAG, False): owner, (TAG, True): owner})
    assert sensor_module._lost(client, submitted(), status("X", outcome, source)) is lost
    assert client.calls == ([] if asked is None else [("find", TAG, asked)])


def test_the_exclusion_note_is_empty_without_excluded_nodes():
    assert sensor_module._excluding_note([]) == ""
    assert sensor_module._excluding_note(["n1", "n2"]) == ", excluding node(s) n1,n2"
