"""Runs a user starts from the UI or a schedule, and what waiting costs the controller."""

from __future__ import annotations

import time

import pytest

from airflow_jobforge.rundir.events import read_events
from airflow_jobforge.slurm.tags import run_key
from tests.slurm_tools import cancel_jobs, sdiag_counts, sdiag_reset

from .runs import records, run_dag, run_dir, slurm_jobs, wait_states
from .workload import FANOUT

pytestmark = [pytest.mark.deployment, pytest.mark.slurm]


def test_a_ui_trigger_with_conf_selects_jobs_and_moves_them_to_another_partition(
    deployment, workload
):
    dag = "jobforge_deploy_params"
    run_id, state = run_dag(deployment, dag, conf={"jobs": ["a*"], "partition": "other"})
    assert state == "success"
    assert set(records(run_dir(dag, run_id))) == {"a0", "a1", "a2"}
    jobs = slurm_jobs(dag, run_id)
    assert len(jobs) == 2 and {j.partition for j in jobs} == {"other"}
    states = deployment.task_states(dag, run_id)
    assert states["g.job_b1"] == "skipped", "b1 is not selected"
    assert states["g.submit_0001"] == "success", "its batch still runs a2"


def test_twenty_deferred_waits_cost_one_job_info_rpc_per_poll(deployment, workload):
    dag = "jobforge_deploy_fanout"
    run_id = deployment.trigger(dag)
    waits = [f"g.wait_{i:04d}" for i in range(FANOUT)]
    wait_states(
        deployment, dag, run_id, lambda s: all(s.get(w) == "deferred" for w in waits), 300
    )
    try:
        sdiag_reset()
        window = 30.0
        time.sleep(window)
        rpcs = sdiag_counts().get("REQUEST_JOB_INFO", 0)
        print(f"REQUEST_JOB_INFO: {rpcs} in {window:.0f} s with {FANOUT} deferred waits")
        # The shared poller asks at most every 2 s (backing off to 10 s while nothing
        # changes) for all jobs at once; one query per wait would be >= 20 per poll.
        assert 1 <= rpcs <= window / 2 + 1, f"{rpcs} job-info RPCs in {window:.0f}s"
    finally:
        # A user marks the run failed: the deferred waits are killed and cancel their jobs.
        deployment.patch(f"/api/v2/dags/{dag}/dagRuns/{run_id}", json={"state": "failed"})
    deadline = time.monotonic() + 120
    try:
        while True:
            jobs = slurm_jobs(dag, run_id)
            done = records(run_dir(dag, run_id))
            if (
                len(jobs) == FANOUT
                and {j.state for j in jobs} == {"CANCELLED"}
                and len(done) == FANOUT
            ):
                break
            assert time.monotonic() < deadline, f"not all canceled and recorded: {jobs} {done}"
            time.sleep(2)
        # Nothing is lost: running jobs are recorded missing by their runner, pending
        # batches' jobs canceled by the killed wait; the event log says a user did it.
        assert {r.status for r in done.values()} <= {"canceled", "missing"}
        assert "canceled" in {r.status for r in done.values()}, "pending batches were recorded"
        canceled = [e for e in read_events(run_dir(dag, run_id)) if e.type == "canceled_by_user"]
        assert len(canceled) == FANOUT
    finally:
        cancel_jobs(f"jf-{run_key(dag, run_id)}.")  # 20 jobs of 600 s must not outlive a failure


def test_a_scheduled_dag_runs_by_itself(deployment, workload):
    dag = "jobforge_deploy_hourly"
    deployment.unpause(dag)
    try:
        deadline = time.monotonic() + 180
        while True:
            runs = deployment.get(f"/api/v2/dags/{dag}/dagRuns")["dag_runs"]
            done = [r for r in runs if r["run_type"] == "scheduled" and r["state"] == "success"]
            if done:
                break
            assert time.monotonic() < deadline, f"no scheduled run succeeded: {runs}"
            time.sleep(2)
    finally:
        deployment.pause(dag)
    assert records(run_dir(dag, done[0]["dag_run_id"]))["tick"].succeeded
