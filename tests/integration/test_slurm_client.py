"""The SLURM client against the real cluster, through the local CLI and through SSH."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from airflow_jobforge.config import SlurmParams
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.rundir import collect_results, summarize
from airflow_jobforge.rundir.batches import JobSpec
from airflow_jobforge.slurm.states import Outcome

from .conftest import (
    node_down,
    sdiag_counts,
    sdiag_reset,
    wait_file,
    wait_for_status,
    wait_terminal,
)

pytestmark = pytest.mark.slurm


def test_successful_batch_succeeds_and_every_job_has_a_record(target):
    out = target.output_dir()
    job = target.submit(
        [JobSpec("a", "echo $JOBFORGE_JOB_NAME"), JobSpec("b", "true", blocked_by=("a",))],
        output_dir=out,
    )
    status = wait_terminal(target.client, job)
    assert status.outcome is Outcome.SUCCEEDED and status.exit_code == 0
    records = collect_results(out)
    assert (
        str(summarize(records.values())) == "2 jobs: 2 successful, 0 failed, 0 canceled, 0 missing"
    )
    assert records["a"].hpc_job_id == job.job_id
    assert (out / "job-output" / "a.out").read_text() == "a\n"
    assert target.client.tail_logs(job.exit_file, 1) == "0\n"


def test_non_zero_exit_fails_with_the_exit_code(target):
    out = target.output_dir()
    job = target.submit([JobSpec("ok", "true"), JobSpec("bad", "exit 3")], output_dir=out)
    status = wait_terminal(target.client, job)
    assert status.outcome is Outcome.FAILED and status.exit_code == 1
    assert collect_results(out)["bad"].return_code == 3


def test_scancel_gives_canceled_and_the_running_job_is_recorded_missing(target):
    out = target.output_dir()
    marker = out / "started"
    job = target.submit(
        [
            JobSpec("long", f"touch {marker}; sleep 120"),
            JobSpec("later", "true", blocked_by=("long",)),
        ],
        output_dir=out,
    )
    wait_file(marker)
    target.client.cancel([job.job_id])
    target.client.cancel([job.job_id])  # idempotent
    status = wait_terminal(target.client, job)
    assert status.outcome is Outcome.CANCELED
    deadline = time.monotonic() + 20
    while len(collect_results(out)) < 2:
        assert time.monotonic() < deadline, "records were not written on scancel"
        time.sleep(0.2)
    records = collect_results(out)
    assert records["long"].status == "missing" and records["later"].status == "canceled"


def test_node_failure_is_retryable(target, cluster):
    out = target.output_dir()
    marker = out / "started"
    job = target.submit([JobSpec("long", f"touch {marker}; sleep 120")], output_dir=out)
    wait_file(marker)
    with node_down(cluster.host):
        status = wait_terminal(target.client, job)
        assert status.state == "NODE_FAIL" and status.outcome is Outcome.RETRYABLE


def test_requeued_job_is_not_terminal(local):
    out = local.output_dir()
    marker = out / "started"
    job = local.submit(
        [JobSpec("long", f"touch {marker}; sleep 120")],
        output_dir=out,
        slurm=SlurmParams(walltime="5", extra=("--requeue",)),
    )
    wait_file(marker)
    subprocess.run(["scontrol", "requeue", job.job_id], check=True)
    seen = []

    def requeued(status):
        seen.append(status)
        return status.state in ("REQUEUED", "PENDING", "REQUEUE_HOLD")

    wait_for_status(local.client, job, requeued)
    local.client.cancel([job.job_id])
    assert seen and not any(s.terminal for s in seen), [s.state for s in seen]


@pytest.mark.slow
def test_walltime_exceeded_is_timeout_and_failed(local):
    out = local.output_dir()
    job = local.submit(
        [JobSpec("long", "sleep 300")], output_dir=out, slurm=SlurmParams(walltime="1")
    )
    status = wait_terminal(local.client, job, timeout=240)
    assert status.state == "TIMEOUT" and status.outcome is Outcome.FAILED
    deadline = time.monotonic() + 20
    while "long" not in collect_results(out):
        assert time.monotonic() < deadline, "walltime kill left no record"
        time.sleep(0.2)
    assert collect_results(out)["long"].status == "missing"


def test_status_of_200_jobs_costs_one_job_info_rpc(target):
    jobs = target.submit_held(200)
    ids = [j.job_id for j in jobs]
    try:
        sdiag_reset()
        statuses = target.client.status(ids)
        counts = sdiag_counts()
        assert counts.get("REQUEST_JOB_INFO") == 1, counts
        assert len(statuses) == 200 and all(s.outcome is Outcome.RUNNING for s in statuses.values())
    finally:
        target.client.cancel(ids)


def test_submitting_the_same_tag_twice_yields_one_job(target):
    out = target.output_dir()
    tag = f"adopt-{target.name}-{time.time_ns()}"
    first = target.submit([JobSpec("a", "sleep 2")], tag=tag, output_dir=out)
    second = target.submit([JobSpec("a", "sleep 2")], tag=tag, output_dir=out)
    assert second.job_id == first.job_id and second.adopted and not first.adopted
    wait_terminal(target.client, first)
    third = target.submit([JobSpec("a", "sleep 2")], tag=tag, output_dir=out)
    assert third.job_id == first.job_id and third.adopted, "a finished job is adopted too"
    names = subprocess.run(
        ["squeue", "-h", "--states=all", f"--name=jf-{tag}", "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert names == [first.job_id]


def test_hostile_output_dir_is_quoted_and_nothing_executes(target):
    canary = target.shared / f"pwned-{target.name}"
    base = target.output_dir()
    hostile = base / f"o'; touch {canary}; echo '$(touch {canary})\"`touch {canary}`"
    job = target.submit([JobSpec("a", "true")], output_dir=hostile)
    assert wait_terminal(target.client, job).outcome is Outcome.SUCCEEDED
    assert collect_results(hostile)["a"].succeeded
    assert not canary.exists()


@pytest.mark.parametrize("value", ["debug;touch /tmp/x", "$(touch /tmp/x)", "a'b", "a\nb"])
def test_partition_or_account_with_shell_characters_never_reaches_sbatch(value):
    with pytest.raises(ValidationError):
        SlurmParams(partition=value)
    with pytest.raises(ValidationError):
        SlurmParams(account=value)


def test_newline_in_output_dir_is_rejected_before_anything_runs(local):
    with pytest.raises(JobForgeError, match="control characters"):
        local.submit([JobSpec("a", "true")], output_dir=Path("/tmp/a\nb"))


def test_an_unknown_partition_is_an_error_with_sbatch_stderr(target):
    with pytest.raises(JobForgeError, match="invalid partition"):
        target.submit([JobSpec("a", "true")], slurm=SlurmParams(partition="nosuchpart"))
