"""Walltime awareness (node.walltime), continuations (the wait's `_continue`), surplus batches
canceled (node.sharing), and claims that a restricted batch (a retry, a continuation) counts
by its planned places. The cluster runs them for real in
tests/integration/test_work_sharing.py."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_jobforge.config import SlurmParams
from airflow_jobforge.config.io import parse_configuration
from airflow_jobforge.node.runner import BatchRunner, run_batch
from airflow_jobforge.node.sharing import WorkSharing
from airflow_jobforge.node.walltime import Walltime, allocation_end
from airflow_jobforge.planning.planner import batch_spec, plan_batches, walltime_margin
from airflow_jobforge.rundir import ResultRecord
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec, restrict_batch
from airflow_jobforge.rundir.claims import Claim, chunk_places, read_claims, try_claim
from airflow_jobforge.rundir.conclusion import Conclusion
from airflow_jobforge.rundir.events import read_events
from airflow_jobforge.sensors.slurm import _others_may_hold_jobs, _ran_elsewhere, continuation_tag
from airflow_jobforge.slurm.request import job_places_of, request_to_dict, slim_request
from airflow_jobforge.slurm.script import SubmitRequest, sbatch_job
from airflow_jobforge.slurm.states import JobStatus, Outcome
from tests.unit.test_sensor_steps import Client, run, submitted
from tests.unit.test_work_sharing import all_records, jobs, publish, spec

A, B = "g-0000", "g-0001"


def rec(name: str, status: str = "finished", ran_in: str | None = None) -> ResultRecord:
    return ResultRecord(
        name=name,
        status=status,  # type: ignore[arg-type]
        return_code=0 if status == "finished" else None,
        exec_time_s=1.0,
        start=1.0,
        end=2.0,
        batch=B,
        ran_in=ran_in,
    )


def job(name: str, estimate: float | None, command: str = "true") -> JobSpec:
    return JobSpec(name, command, estimate_s=estimate)


# --- the rule --------------------------------------------------------------------------------
def test_a_job_fits_when_its_estimate_ends_a_margin_before_the_allocations_end():
    now = [1000.0]
    wall = Walltime(end=1100.0, walltime_s=3600.0, margin_s=10.0, clock=lambda: now[0])
    assert wall.fits(job("a", 90.0)) and not wall.fits(job("b", 90.5))
    assert wall.fit_all([job("a", 45.0), job("b", 45.0)])
    assert not wall.fit_all([job("a", 45.0), job("b", 46.0)])
    now[0] = 1050.0
    assert wall.time_left_s() == 50.0 and not wall.at_end()
    now[0] = 1098.5
    assert wall.at_end()  # SLURM's SIGTERM at the walltime comes now or later


def test_without_an_estimate_the_longest_run_seen_is_the_guess_and_none_starts_anything():
    wall = Walltime(end=1100.0, walltime_s=3600.0, margin_s=10.0, clock=lambda: 1000.0)
    assert wall.fits(job("a", None))
    wall.ran(30.0)
    wall.ran(95.0)
    wall.ran(20.0)
    assert wall.longest_s == 95.0 and not wall.fits(job("b", None))
    assert wall.fits(job("c", 5.0))  # its own estimate wins


def test_a_job_no_allocation_of_this_walltime_could_run_starts_anyway():
    wall = Walltime(end=1100.0, walltime_s=600.0, margin_s=10.0, clock=lambda: 1000.0)
    assert wall.fits(job("huge", 700.0))  # no continuation could run it: retry.timeout's case


def test_no_margin_or_no_end_means_every_job_fits():
    assert Walltime(None, None, 10.0, time.time).fits(job("a", 1e9))
    assert not Walltime(1.0, 60.0, None, time.time).aware  # stop_before_walltime off


def test_the_allocations_end_comes_from_slurm_or_from_the_batch_script():
    assert allocation_end({"SLURM_JOB_END_TIME": "1700000000"}) == 1700000000
    assert allocation_end({"JOBFORGE_END_TIME": "1700000100"}) == 1700000100
    assert allocation_end({"SLURM_JOB_END_TIME": "0", "JOBFORGE_END_TIME": "5"}) == 5
    assert allocation_end({"JOBFORGE_END_TIME": "soon"}) is None
    assert allocation_end({}) is None


def test_the_batch_script_exports_the_allocations_end_only_under_slurm(tmp_path):
    request = SubmitRequest(
        tag="k.g-0000.t1",
        batch=BatchSpec("g-0000", (JobSpec("a", "true"),)),
        slurm=SlurmParams(walltime="1:30:00"),
        output_dir=str(tmp_path),
    )
    script = sbatch_job(request).script
    assert 'if [ -n "${SLURM_JOB_ID:-}" ]; then\nexport JOBFORGE_WALLTIME_S=5400\n' in script
    assert "export JOBFORGE_END_TIME=$(( ${EPOCHSECONDS:-$(date +%s)} + 5400 ))" in script


# --- planning --------------------------------------------------------------------------------
def group_config(walltime: str = "1:00:00", **batching: Any):
    return parse_configuration(
        {
            "jobs": [
                {"name": "a", "command": "true", "estimated_run_minutes": 0.5},
                {"name": "b", "command": "true"},
            ],
            "submission_groups": [
                {"name": "g", "slurm": {"walltime": walltime}, "batching": batching}
            ],
        }
    )


@pytest.mark.parametrize(
    ("walltime", "batching", "margin"),
    [
        ("1:00:00", {}, 120.0),  # 5 % is 180 s: capped at 2 min
        ("10", {}, 30.0),  # 5 % of 10 min
        ("1", {}, 5.0),  # 5 % is 3 s: at least 5
        ("1:00:00", {"walltime_margin_s": 42}, 42.0),
        ("1:00:00", {"stop_before_walltime": False}, None),
    ],
)
def test_the_margin_is_5_percent_of_the_walltime_bounded_or_the_groups(walltime, batching, margin):
    cfg = group_config(walltime, **batching)
    assert walltime_margin(cfg.group("g")) == margin
    plan = plan_batches(cfg)
    s = batch_spec(cfg, plan, plan.batches[0])
    assert s.walltime_margin_s == margin and s.max_continuations == 3
    assert [(j.name, j.estimate_s) for j in s.jobs] == [("a", 30.0), ("b", None)]


# --- the runner ------------------------------------------------------------------------------
def aware(monkeypatch, end_in: float, walltime_s: float = 100_000) -> None:
    monkeypatch.setenv("JOBFORGE_END_TIME", str(time.time() + end_in))
    monkeypatch.setenv("JOBFORGE_WALLTIME_S", str(walltime_s))


def test_a_runner_starts_only_what_fits_and_leaves_the_rest_and_its_dependants(
    tmp_path, monkeypatch
):
    aware(monkeypatch, end_in=1000)
    s = BatchSpec(
        A,
        (
            job("short", 1.0),
            job("long", 2000.0),  # fits a fresh allocation, not this one's time left
            JobSpec("after", "true", blocked_by=("long",), estimate_s=1.0),
            job("huge", 200_000.0),  # fits none: started anyway
        ),
        num_processes=2,
        walltime_margin_s=10.0,
    )
    assert run_batch(s, tmp_path, monitor_interval_s=0) == 0
    assert sorted(r.name for r in all_records(tmp_path)) == ["huge", "short"]
    (left,) = [e for e in read_events(tmp_path) if e.type == "jobs_left"]
    assert left.batch == A and left.data["jobs"] == ["long", "after"]
    assert "2 job(s) not started: they would not end 10 s before the walltime" in left.message


def test_a_runner_guesses_a_job_without_estimate_by_the_longest_it_ran(tmp_path, monkeypatch):
    aware(monkeypatch, end_in=10.25)  # the first job takes 0.3 s: the second would not fit
    s = BatchSpec(
        A,
        (job("first", None, "sleep 0.3"), job("second", None)),
        num_processes=1,
        walltime_margin_s=10.0,
    )
    assert run_batch(s, tmp_path, monitor_interval_s=0) == 0
    assert [r.name for r in all_records(tmp_path)] == ["first"]


def test_without_a_walltime_margin_a_runner_starts_everything(tmp_path, monkeypatch):
    aware(monkeypatch, end_in=1)
    s = BatchSpec(A, (job("long", 2000.0),), num_processes=1)
    assert run_batch(s, tmp_path, monitor_interval_s=0) == 0
    assert [r.name for r in all_records(tmp_path)] == ["long"]


def stopped_runner(s: BatchSpec, out: Path, monkeypatch) -> BatchRunner:
    """A runner SIGTERMed with no job running (what `_terminate` does with unstarted jobs)."""
    runner = BatchRunner(s, out, monitor_interval_s=0)
    monkeypatch.setattr(runner, "_stop_all", lambda pids, wake: {})
    runner._terminate({}, SimpleNamespace(terminated_by=signal.SIGTERM))
    runner._flush()
    return runner


def test_a_runner_terminated_at_its_walltime_leaves_unstarted_jobs_for_a_continuation(
    tmp_path, monkeypatch
):
    aware(monkeypatch, end_in=-5)  # SLURM's SIGTERM comes at (or after) the end
    s = BatchSpec(A, tuple(jobs("j", 3)), num_processes=1, walltime_margin_s=1.0)
    stopped_runner(s, tmp_path, monkeypatch)
    assert all_records(tmp_path) == []  # not canceled: the wait continues them
    (left,) = [e for e in read_events(tmp_path) if e.type == "jobs_left"]
    assert left.data["jobs"] == ["j0", "j1", "j2"]


def test_a_runner_terminated_before_its_walltime_cancels_unstarted_jobs(tmp_path, monkeypatch):
    aware(monkeypatch, end_in=500)  # a user's scancel
    s = BatchSpec(A, tuple(jobs("j", 2)), num_processes=1, walltime_margin_s=1.0)
    stopped_runner(s, tmp_path, monkeypatch)
    assert sorted((r.name, r.status) for r in all_records(tmp_path)) == [
        ("j0", "canceled"),
        ("j1", "canceled"),
    ]


def test_a_runner_takes_no_chunk_of_another_batch_that_would_not_end_in_time(tmp_path, monkeypatch):
    aware(monkeypatch, end_in=1000)
    mine = spec(A, [job("a0", 1.0)], procs=2, walltime_margin_s=10.0)
    other = spec(B, [job("b0", 1.0), job("b1", 5000.0), job("b2", 2.0)], walltime_margin_s=10.0)
    publish(tmp_path, mine, other)
    assert run_batch(mine, tmp_path, monitor_interval_s=0) == 0
    ran = {r.name: r.ran_in for r in all_records(tmp_path)}
    assert ran == {"a0": None, "b0": A, "b2": A}
    assert 1 not in read_claims(tmp_path, B)  # b1 is left to its batch


# --- claims of a restricted batch ------------------------------------------------------------
def test_a_retry_of_some_jobs_claims_by_their_planned_places_and_keeps_its_earlier_claims(
    tmp_path,
):
    full = spec(A, jobs("j", 6), chunk=2)
    assert chunk_places(full) == [(f"j{i}", i) for i in range(6)]
    try_claim(tmp_path, A, 0, Claim(A, "100"))  # the first allocation ran j0, j1
    try_claim(tmp_path, A, 1, Claim(B, "200"))  # another batch took j2, j3
    retry = restrict_batch(full, ["j1", "j3", "j4", "j5"])
    assert chunk_places(retry) == [("j1", 1), ("j3", 3), ("j4", 4), ("j5", 5)]
    runner = BatchRunner(retry, tmp_path, monitor_interval_s=0)
    runner.hpc_job_id = "101"
    sharing = WorkSharing(runner)
    assert [sharing.own(j) for j in retry.jobs] == [True, False, True, True]
    # a slim request (a trigger's) keeps the places
    request = SubmitRequest("t", retry, SlurmParams(walltime="5"), str(tmp_path))
    slim = slim_request(request_to_dict(request))["batch"]
    assert job_places_of(slim) == chunk_places(retry)


def test_a_claim_being_written_is_not_taken_for_an_earlier_allocations(tmp_path):
    (tmp_path / "claims" / A / "000000").mkdir(parents=True)
    runner = BatchRunner(spec(A, jobs("j", 1)), tmp_path, monitor_interval_s=0)
    assert WorkSharing(runner).own(runner.spec.jobs[0]) is False


# --- surplus ---------------------------------------------------------------------------------
def fake_slurm(tmp_path: Path, monkeypatch, pending: str) -> Path:
    """squeue prints `pending`; scancel logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "scancel.log"
    for name, body in (
        ("squeue", f"printf '%s' {json.dumps(pending)}"),
        ("scancel", f'echo "$@" >> {log}'),
    ):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def test_a_runner_cancels_pending_batches_whose_every_chunk_others_claimed(tmp_path, monkeypatch):
    mine = spec(A, jobs("a", 1))
    taken = spec(B, jobs("b", 2))  # this runner takes both of its jobs
    kept = spec("g-0002", [*jobs("c", 1), JobSpec("c9", "true", blocked_by=("c0",))])
    publish(tmp_path, mine, taken, kept)
    log = fake_slurm(
        tmp_path,
        monkeypatch,
        "301 jf-k.g-0001.t1\n302 jf-k.g-0002.t1\n303 jf-other.g-0001.t1\n",
    )
    monkeypatch.setenv("SLURM_JOB_ID", "300")
    monkeypatch.setenv("SLURM_JOB_NAME", "jf-k.g-0000.t1")
    assert run_batch(mine, tmp_path, monitor_interval_s=0) == 0
    assert log.read_text() == "--state=PENDING 301\n"  # not g-0002 (c9 is its own), not run 'other'
    (event,) = [e for e in read_events(tmp_path) if e.type == "batch_surplus_cancelled"]
    assert (event.batch, event.hpc_job_id, event.data) == (B, "301", {"by": A})


# --- the wait --------------------------------------------------------------------------------
def continuing(monkeypatch, state: str, outcome: Outcome, exit_code: int | None, **batch: Any):
    job = submitted()
    job["request"]["batch"] = {
        **job["request"]["batch"],
        "jobs": [
            {"name": "a", "command": "true"},
            {"name": "b", "command": "true"},
            {"name": "c", "command": "true", "blocked_by": ["b"]},
        ],
        "walltime_margin_s": 5.0,
        "max_continuations": 2,
        **batch,
    }
    status = JobStatus("2254", state, outcome, exit_code=exit_code)
    client = Client(status, {})
    sensor, context, log = run(monkeypatch, client, try_number=1)
    return sensor, context, log, client, job, status


def test_the_wait_continues_the_jobs_a_runner_left_as_a_new_batch_tagged_for_adoption(
    monkeypatch,
):
    sensor, context, log, client, job, status = continuing(
        monkeypatch, "COMPLETED", Outcome.SUCCEEDED, 0
    )
    records = {"a": rec("a")}
    info = sensor._follow_up(context, job, status, records)
    assert info is not None and info["continuation"] == 1 and info["job_id"] == "2260"
    assert continuation_tag("k", "g-0000", 1, 1) == "k.g-0000.t1c1"
    submit = [c for c in client.calls if c[0] == "submit"]
    assert submit == [("submit", "k.g-0000.t1c1", True, ())]
    sent = info["request"]["batch"]
    assert [(j["name"], j["blocked_by"], j["claim_index"]) for j in sent["jobs"]] == [
        ("b", (), 1),
        ("c", ("b",), 2),
    ]
    (event,) = [c[2][0] for c in client.calls if c[0] == "append_text"]
    assert event["type"] == "batch_continued" and event["data"]["jobs"] == ["b", "c"]
    assert "continued as SLURM job 2260 (continuation 1 of at most 2)" in log.lines[-1][1]


def test_no_continuation_when_every_job_has_a_record_nothing_is_read(monkeypatch):
    sensor, context, _, client, job, status = continuing(
        monkeypatch, "COMPLETED", Outcome.SUCCEEDED, 0
    )
    records = {n: rec(n) for n in "abc"}
    assert sensor._follow_up(context, job, status, records) is None
    assert client.calls == []


@pytest.mark.parametrize(
    ("state", "outcome", "exit_code", "continued"),
    [
        ("FAILED", Outcome.FAILED, 1, True),  # some jobs failed: the runner still ran to its end
        ("TIMEOUT", Outcome.FAILED, None, True),
        ("FAILED", Outcome.FAILED, 3, False),  # records unwritable: the jobs may have run
        ("CANCELLED", Outcome.CANCELED, None, False),
        ("NODE_FAIL", Outcome.RETRYABLE, None, False),
    ],
)
def test_which_ends_are_continued(monkeypatch, state, outcome, exit_code, continued):
    sensor, context, _, _, job, status = continuing(monkeypatch, state, outcome, exit_code)
    assert (sensor._follow_up(context, job, status, {}) is not None) is continued


def test_continuations_spent_cancel_the_left_jobs_with_the_reason(monkeypatch):
    sensor, context, log, client, job, status = continuing(
        monkeypatch, "COMPLETED", Outcome.SUCCEEDED, 0
    )
    job["continuation"] = 2
    assert sensor._follow_up(context, job, status, {}) is None
    assert "no continuation left (max_continuations 2)" in log.lines[-1][1]
    client.calls.clear()
    records = sensor._complete_records(client, job, status)
    assert {(r.status, r.reason) for r in records.values()} == {
        (
            "canceled",
            "not started: would not end before the walltime, and the batch's 2 "
            "continuation(s) are spent",
        )
    }


def test_a_later_try_adopts_the_newest_continuation_of_an_earlier_one(monkeypatch):
    job = submitted()
    job["request"]["batch"]["max_continuations"] = 3
    client = Client(
        JobStatus("2261", "RUNNING", Outcome.RUNNING, source="squeue"),
        {("k.g-0000.t1c2", True): "2261", ("k.g-0000.t1c2", False): "2261"},
    )
    sensor, context, _ = run(monkeypatch, client, try_number=2)
    context["ti"].xcom_pull = lambda task_ids: job
    current = sensor._current_job(context)
    assert (current["job_id"], current["continuation"]) == ("2261", 2)
    assert [c[1:] for c in client.calls if c[0] == "find"] == [
        ("k.g-0000.w2", True),  # this try's own resubmission: none
        ("k.g-0000.t1c3", True),
        ("k.g-0000.t1c2", True),  # the newest continuation of try 1
        ("k.g-0000.t1c2", False),  # the queue still gives its id our tag: adopted
    ]
    assert not [c for c in client.calls if c[0] == "submit"]


def test_a_batch_canceled_pending_whose_jobs_all_ran_elsewhere_is_done():
    job = {"request": {"batch": {"batch": B, "share": True, "job_names": ["x", "y"]}}}
    ran = {n: rec(n, ran_in=A) for n in "xy"}
    assert _ran_elsewhere(job, ran) == 2
    ran["y"] = rec("y", "missing")  # completed by the wait: lost
    assert _ran_elsewhere(job, ran) == 0
    assert _ran_elsewhere({"request": {"batch": {"batch": B, "job_names": ["x"]}}}, ran) == 0


def test_a_sharing_wait_looks_at_claims_only_when_a_job_has_no_record():
    job = {"request": {"batch": {"batch": B, "share": True, "job_names": ["x", "y"]}}}
    both = Conclusion(records={n: rec(n, ran_in=A) for n in "xy"}, event_written=True)
    assert not _others_may_hold_jobs(job, both)  # over SSH: no login for the others' sake
    one = Conclusion(records={"x": rec("x")}, event_written=True)
    assert _others_may_hold_jobs(job, one)
    assert _others_may_hold_jobs(job, Conclusion())  # the trigger brought no records
    alone = {"request": {"batch": {"batch": B, "job_names": ["x"]}}}
    assert not _others_may_hold_jobs(alone, Conclusion())
