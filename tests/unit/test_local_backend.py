"""The local backend's status: a batch process that is gone is over, at once."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from airflow_jobforge.config.models import SlurmParams
from airflow_jobforge.local.backend import LocalClient
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.slurm.script import SubmitRequest
from airflow_jobforge.slurm.states import Outcome

GONE = "local-999999999"  # no such pid: a process that has ended


def wait_terminal(client: LocalClient, job_id: str, exit_file: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        status = client.status([job_id], {job_id: exit_file})[job_id]
        if status.terminal or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_a_batch_that_ended_without_exit_file_fails_at_once_with_its_stderr(tmp_path):
    exit_file = tmp_path / "jf-x-local-999999999.exit"
    (tmp_path / "jf-x-local-999999999.err").write_text("line 1\nTraceback...\nMemoryError\n")
    status = LocalClient(tmp_path / "state").status([GONE], {GONE: str(exit_file)})[GONE]
    assert status.outcome is Outcome.FAILED
    assert status.reason == (
        f"local batch process ended without writing {exit_file}; "
        "its stderr ends: line 1 | Traceback... | MemoryError"
    )


def test_a_fallback_exit_file_is_read_when_the_exit_file_is_absent(tmp_path):
    client = LocalClient(tmp_path / "state")
    exit_file = tmp_path / "out" / "jf-x-local-999999999.exit"
    client.fallback_dir.mkdir(parents=True)
    (client.fallback_dir / exit_file.name).write_text(
        f"0\ncannot write the exit file {exit_file}\n"
    )
    status = client.status([GONE], {GONE: str(exit_file)})[GONE]
    assert status.outcome is Outcome.SUCCEEDED
    assert status.reason == f"cannot write the exit file {exit_file}"


def test_a_submitted_batch_runs_and_its_exit_file_decides(tmp_path):
    client = LocalClient(tmp_path / "state")
    request = SubmitRequest(
        tag="ok",
        batch=BatchSpec("b", (JobSpec("a", "true"), JobSpec("f", "exit 2"))),
        slurm=SlurmParams(),
        output_dir=str(tmp_path / "out"),
        python=sys.executable,
        pythonpath=str(Path(__file__).resolve().parents[2]),
    )
    job = client.submit(request, adopt=False)
    status = wait_terminal(client, job.job_id, job.exit_file)
    assert (status.outcome, status.exit_code, status.source) == (Outcome.FAILED, 1, "exit_file")


def test_a_batch_killed_before_its_exit_file_fails_within_a_second(tmp_path):
    """SIGKILL leaves no exit file: FAILED at the next status, not UNKNOWN for 300 s."""
    client = LocalClient(tmp_path / "state")
    request = SubmitRequest(
        tag="killed",
        batch=BatchSpec("b", (JobSpec("a", "sleep 30"),)),
        slurm=SlurmParams(),
        output_dir=str(tmp_path / "out"),
        python=sys.executable,
    )
    job = client.submit(request, adopt=False)
    os.killpg(int(job.job_id.removeprefix("local-")), signal.SIGKILL)
    started = time.monotonic()
    status = wait_terminal(client, job.job_id, job.exit_file)
    assert status.outcome is Outcome.FAILED and time.monotonic() - started < 1
    assert f"ended without writing {job.exit_file}" in status.reason
