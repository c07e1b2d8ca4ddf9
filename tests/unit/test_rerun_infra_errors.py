"""A `rerun_of` run reads the earlier run's records on the cluster: an outage there (SSH, the
SLURM controller) must take the task's infrastructure retries, while a bad `rerun_of` or
`rerun` param fails the task for good."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from airflow_jobforge.airflow_compat import AirflowFailException
from airflow_jobforge.errors import JobForgeError, SlurmError
from airflow_jobforge.hooks.slurm import SlurmHook
from airflow_jobforge.operators.results import BatchResultOperator
from airflow_jobforge.rundir import ResultRecord
from airflow_jobforge.slurm.client import RetryPolicy, SlurmClient
from airflow_jobforge.slurm.transport import CommandResult, TransportError

# What SSHTransport raises on a dropped connection, and what SlurmClient gives up with after
# the controller kept answering "Unable to contact slurm controller".
SSH_LOST = TransportError("SSH to login1: Connection reset by peer")
CONTROLLER_DOWN = SlurmError("giving up after repeated transient SLURM errors")


class LostConnection:
    """A transport whose SSH connection is gone: every command fails to start."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, argv: Sequence[str], *, input=None, timeout=None) -> CommandResult:
        self.calls += 1
        raise TransportError("SSH to login1: Connection reset by peer")

    def close(self) -> None:
        pass


class Records:
    """A client whose `read_results` answers `answer`: records, or an error to raise."""

    def __init__(self, answer: dict[str, ResultRecord] | Exception) -> None:
        self.answer = answer
        self.closed = False

    def read_results(self, output_dir: str, batch: str | None = None):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def close(self) -> None:
        self.closed = True


def results_task() -> BatchResultOperator:
    return BatchResultOperator(
        task_id="results_0000",
        jobs=["a", "b"],
        batch="g-0000",
        output_dir="/o",
        cluster={"backend": "slurm"},
        submit_task_id="submit_0000",
    )


def rerun_context(**params) -> dict:
    return {"params": {"rerun_of": "run-1", **params}, "run_id": "run-2"}


@pytest.mark.parametrize("error", [SSH_LOST, CONTROLLER_DOWN], ids=["ssh", "controller"])
def test_an_outage_while_selecting_a_rerun_is_retried_not_failed_for_good(error):
    with pytest.raises(SlurmError) as raised:
        results_task().selection(rerun_context(), "/o", Records(error))
    assert raised.value is error
    assert not isinstance(raised.value, AirflowFailException)


def test_a_lost_ssh_connection_reaches_the_task_as_a_retryable_error():
    """Through the real client: its own retries spent, the task's retries take over."""
    transport = LostConnection()
    client = SlurmClient(transport, RetryPolicy(attempts=3), sleep=lambda s: None)
    with pytest.raises(TransportError):
        results_task().selection(rerun_context(), "/o", client)
    assert transport.calls == 3


def test_a_task_that_opens_its_own_client_closes_it_after_an_outage(monkeypatch):
    client = Records(SSH_LOST)
    monkeypatch.setattr(SlurmHook, "get_client", lambda self: client)
    with pytest.raises(TransportError):
        results_task()._selected(rerun_context())
    assert client.closed


def test_a_rerun_of_a_run_without_records_fails_for_good():
    with pytest.raises(AirflowFailException, match="rerun_of 'run-1': no result records"):
        results_task().selection(rerun_context(), "/o", Records({}))


def test_an_invalid_rerun_param_fails_for_good():
    with pytest.raises(AirflowFailException, match="invalid DAG run parameter rerun"):
        results_task().selection(rerun_context(rerun=["typo"]), "/o", Records({}))


def test_any_other_jobforge_error_while_selecting_fails_for_good():
    bad = JobForgeError("results of run-1 cannot be read as records")
    with pytest.raises(AirflowFailException, match="cannot be read as records"):
        results_task().selection(rerun_context(), "/o", Records(bad))


def test_a_cluster_error_while_the_submit_builds_its_request_is_retried(monkeypatch):
    """The submit reads the earlier run's records while it builds its request: an error
    there that looks like SLURM refusing (a command that ran and failed) is not a rejection
    of the batch, and there is no request to name yet."""
    from airflow_jobforge.operators.submit import SlurmSubmitOperator

    task = SlurmSubmitOperator(
        task_id="submit_0000",
        batch={"batch": "g-0000", "jobs": [{"name": "a", "command": "true"}]},
        slurm={"walltime": "5"},
        output_dir="/o",
        cluster={"backend": "slurm"},
    )
    client = Records({})
    monkeypatch.setattr(SlurmHook, "get_client", lambda self: client)
    refused = SlurmError("cat: /o/results: Permission denied")

    def build_request(context, client):
        raise refused

    monkeypatch.setattr(task, "build_request", build_request)
    with pytest.raises(SlurmError) as raised:
        task.execute({"ti": None})
    assert raised.value is refused and client.closed
