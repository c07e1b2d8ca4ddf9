"""Sensors, triggers and submit adoption against the real cluster."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from airflow_jobforge.config import SlurmParams
from airflow_jobforge.operators.submit import SlurmSubmitOperator
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.sensors.slurm import SlurmJobSensor
from airflow_jobforge.triggers.poller import SharedPoller
from airflow_jobforge.triggers.slurm import SlurmJobTrigger

from .conftest import node_down, sdiag_counts, sdiag_reset, wait_file, wait_running, wait_terminal

pytestmark = pytest.mark.slurm
SLURM = {"backend": "slurm"}


async def until(condition, timeout: float = 120.0):
    """Wait for `condition()` to be truthy and return it: what a step waits for, not a guess
    at how long the cluster takes on a loaded machine; the deadline only ends a failing test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := condition()):
        assert loop.time() < deadline, f"not within {timeout}s"
        await asyncio.sleep(0.05)
    return value


def polling(job_ids: set[str], polls: int):
    """The shared poller watching all of `job_ids` once it has polled `polls` times."""
    return lambda: next(
        (
            p
            for p in SharedPoller._registry.values()
            if job_ids <= set(p.watches) and p.polls >= polls
        ),
        None,
    )


def squeue_state(job_id: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"], capture_output=True, text=True
    ).stdout.strip()


def test_200_deferred_waits_cost_one_status_query_per_poll(local):
    jobs = local.submit_held(200)
    ids = [j.job_id for j in jobs]

    async def scenario():
        triggers = [
            SlurmJobTrigger(j.job_id, j.exit_file, SLURM, poll_interval=0.5, max_poll_interval=0.5)
            for j in jobs
        ]

        async def first_event(trigger):
            async for event in trigger.run():
                return event.payload

        sdiag_reset()
        started = time.monotonic()
        tasks = [asyncio.create_task(first_event(t)) for t in triggers]
        poller = await until(polling(set(ids), 4))
        polls_while_waiting = poller.polls
        elapsed = time.monotonic() - started
        counts = sdiag_counts()
        subprocess.run(["scancel", *ids], check=True)
        events = await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        return polls_while_waiting, elapsed, counts, events

    polls, elapsed, counts, events = asyncio.run(scenario())
    # The interval holds for all 200 together: one poll at once, then at most one per 0.5 s
    # (a slow machine only makes polls rarer).
    assert polls <= 1 + elapsed / 0.5, (polls, elapsed)
    # one REQUEST_JOB_INFO per poll for all 200; a poll may be in flight while we read sdiag
    assert polls <= counts.get("REQUEST_JOB_INFO", 0) <= polls + 1, (counts, polls)
    assert len(events) == 200 and {e["outcome"] for e in events} == {"canceled"}
    assert {e["echo"] for e in events} == {None}


def test_killing_a_waiting_task_cancels_its_slurm_job(local):
    out = local.output_dir()
    marker = out / "started"
    job = local.submit([JobSpec("long", f"touch {marker}; sleep 300")], output_dir=out)
    wait_file(marker)
    trigger = SlurmJobTrigger(job.job_id, job.exit_file, SLURM, poll_interval=0.5)

    async def scenario():
        async def first_event():
            async for event in trigger.run():
                return event.payload

        waiting = asyncio.create_task(first_event())
        await until(polling({job.job_id}, 2))  # the trigger waits: its job polled, running
        assert not waiting.done()
        await trigger.on_kill()  # what Airflow 3.3 calls when a user kills the deferred task
        return await asyncio.wait_for(waiting, timeout=60)

    event = asyncio.run(scenario())
    assert event["outcome"] == "canceled"
    assert squeue_state(job.job_id) == "CANCELLED", "no orphan left in squeue"


def test_killing_a_poking_sensor_cancels_its_slurm_job(local):
    out = local.output_dir()
    marker = out / "started"
    job = local.submit([JobSpec("long", f"touch {marker}; sleep 300")], output_dir=out)
    wait_file(marker)
    sensor = SlurmJobSensor(
        task_id="wait", submit_task_id="submit", cluster=SLURM, deferrable=False
    )
    sensor._job = {"job_id": job.job_id}
    sensor.on_kill()
    assert wait_terminal(local.client, job).state == "CANCELLED"


def context(try_number: int, xcom=None):
    ti = SimpleNamespace(try_number=try_number, xcom_pull=lambda task_ids: xcom)
    return {
        "params": {},
        "dag": SimpleNamespace(dag_id="adopt"),
        "run_id": f"r{time.time_ns()}",
        "ti": ti,
    }


def submit_operator(out) -> SlurmSubmitOperator:
    batch = BatchSpec("g-0000", (JobSpec("long", "sleep 300"),), num_processes=1)
    return SlurmSubmitOperator(
        task_id="submit",
        batch=batch.to_dict(),
        slurm=SlurmParams(walltime="5").model_dump(mode="json"),
        output_dir=str(out),
        cluster={**SLURM, "python": sys.executable},
    )


def test_a_restart_or_retry_of_submit_adopts_its_job_and_only_a_clear_submits_anew(local):
    op = submit_operator(local.output_dir())
    ctx = context(1)
    first = op.execute(ctx)
    again = op.execute(ctx)  # the same try restarted (worker died after sbatch)
    assert again["job_id"] == first["job_id"] and again["adopted"]
    retry = op.execute({**ctx, "ti": SimpleNamespace(try_number=2, max_tries=op.retries)})
    assert retry["job_id"] == first["job_id"], "an automatic retry adopts the running job"
    local.client.cancel([first["job_id"]])
    wait_terminal(
        local.client, SimpleNamespace(job_id=first["job_id"], exit_file=first["exit_file"])
    )
    third = op.execute({**ctx, "ti": SimpleNamespace(try_number=3, max_tries=op.retries)})
    assert third["job_id"] == first["job_id"], "a retry adopts the ended job too: no 2nd job"
    cleared = SimpleNamespace(try_number=4, max_tries=3 + op.retries)  # the user's clear
    fourth = op.execute({**ctx, "ti": cleared})
    assert fourth["job_id"] != first["job_id"], "a user's clear submits anew"
    local.client.cancel([fourth["job_id"]])


def test_a_restarted_sensor_adopts_instead_of_resubmitting(local):
    op = submit_operator(local.output_dir())
    ctx = context(1)
    submitted = op.execute(ctx)
    wait_running(
        local.client, SimpleNamespace(job_id=submitted["job_id"], exit_file=submitted["exit_file"])
    )
    sensor = SlurmJobSensor(task_id="wait", submit_task_id="submit", cluster=SLURM, batch=op.batch)
    restarted = {**ctx, "ti": SimpleNamespace(try_number=2, xcom_pull=lambda task_ids: submitted)}
    assert sensor._current_job(restarted)["job_id"] == submitted["job_id"]
    local.client.cancel([submitted["job_id"]])


def test_a_sensor_retry_after_node_failure_resubmits_the_batch(local, cluster):
    op = submit_operator(local.output_dir())
    ctx = context(1)
    submitted = op.execute(ctx)
    job = SimpleNamespace(job_id=submitted["job_id"], exit_file=submitted["exit_file"])
    wait_running(local.client, job)
    with node_down(cluster.host):
        assert wait_terminal(local.client, job).state == "NODE_FAIL"
    sensor = SlurmJobSensor(task_id="wait", submit_task_id="submit", cluster=SLURM, batch=op.batch)
    retry = {**ctx, "ti": SimpleNamespace(try_number=2, xcom_pull=lambda task_ids: submitted)}
    new = sensor._current_job(retry)
    assert new["job_id"] != submitted["job_id"] and not new["adopted"]
    assert sensor._current_job(retry)["job_id"] == new["job_id"], "a restart adopts the resubmit"
    local.client.cancel([new["job_id"]])
