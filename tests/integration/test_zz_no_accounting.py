"""The client on a cluster without slurmdbd (sacct disabled), as many sites run.

Runs last (marker `runs_last`, ordered by tests/integration/conftest.py): it restarts the
cluster without accounting, cold-restarts the controller, and restores accounting after.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from airflow_jobforge.rundir.batches import JobSpec
from airflow_jobforge.slurm.states import Outcome

from .conftest import start_cluster, wait_terminal

pytestmark = [pytest.mark.slurm, pytest.mark.runs_last]


@pytest.fixture(scope="module")
def no_accounting(cluster):
    try:
        start_cluster("--no-accounting")
        yield
    finally:  # accounting back even when the start without it failed halfway
        start_cluster()


def controller_running() -> bool:
    return subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0


def stop_controller(grace_s: float = 15) -> None:
    """Stop slurmctld and wait until it is gone (a dying daemon still matches pgrep): SIGTERM,
    SIGKILL after `grace_s` (saving its state can take seconds, as scripts/slurm/start.sh
    knows; the restart after is cold anyway), and a failure after as long again."""
    subprocess.run(["pkill", "-x", "slurmctld"], check=True)
    deadline = time.monotonic() + grace_s
    killed = False
    while controller_running():
        if time.monotonic() >= deadline:
            assert not killed, f"slurmctld still running {grace_s:.0f}s after SIGKILL"
            subprocess.run(["pkill", "-9", "-x", "slurmctld"], check=False)
            killed, deadline = True, time.monotonic() + grace_s
        time.sleep(0.1)


def test_status_and_adoption_work_without_sacct(no_accounting, target):
    out = target.output_dir()
    tag = f"noacct-{target.name}-{time.time_ns()}"
    job = target.submit([JobSpec("a", "true"), JobSpec("b", "exit 2")], tag=tag, output_dir=out)
    status = wait_terminal(target.client, job)
    assert status.outcome is Outcome.FAILED and status.source == "squeue"
    assert target.submit([JobSpec("a", "true")], tag=tag, output_dir=out).job_id == job.job_id
    unknown = target.client.status(["99999999"])["99999999"]
    assert unknown.outcome is Outcome.UNKNOWN
    assert target.client.accounting.enabled is False


def test_exit_code_file_is_the_truth_once_the_controller_forgot_the_job(no_accounting, local):
    out = local.output_dir()
    job = local.submit([JobSpec("a", "true")], output_dir=out)
    assert wait_terminal(local.client, job).outcome is Outcome.SUCCEEDED
    # A cold restart (-c) drops the controller's job records, as MinJobAge does in time.
    stop_controller()
    subprocess.run(["/usr/sbin/slurmctld", "-i", "-c"], check=True)
    deadline = time.monotonic() + 60
    while subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "slurmctld does not answer after its cold restart"
        time.sleep(0.2)
    status = local.client.status([job.job_id], {job.job_id: job.exit_file})[job.job_id]
    assert (status.source, status.outcome, status.exit_code) == ("exit_file", Outcome.SUCCEEDED, 0)
