"""Client logic over a transport that replays outputs recorded on the real cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from airflow_jobforge.config import SlurmParams
from airflow_jobforge.errors import SlurmError
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.slurm.client import (
    AsyncSlurmClient,
    RetryPolicy,
    SlurmClient,
    StatusTracker,
)
from airflow_jobforge.slurm.script import SubmitRequest
from airflow_jobforge.slurm.states import Outcome
from airflow_jobforge.slurm.transport import CommandResult, TransportError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "slurm"
SOCKET_TIMEOUT = "slurm_load_jobs error: Socket timed out on send/recv operation\n"
ACCT_OFF = (FIXTURES / "sacct_accounting_disabled.err").read_text()


def rec(name: str) -> str:
    return (FIXTURES / name).read_text()


class Replay:
    """Answers each command by its program name from a queue of (rc, stdout, stderr)."""

    def __init__(self, answers: dict[str, list]) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, input=None, timeout=None) -> CommandResult:
        self.calls.append(tuple(argv))
        answer = self.answers[argv[0]].pop(0)
        if isinstance(answer, Exception):
            raise answer
        rc, out, err = answer
        return CommandResult(tuple(argv), rc, out, err)

    def close(self) -> None:
        pass

    def programs(self) -> list[str]:
        return [c[0] for c in self.calls]


class AsyncReplay(Replay):
    async def run(self, argv, *, input=None, timeout=None):  # type: ignore[override]
        return Replay.run(self, argv, input=input, timeout=timeout)

    async def close(self) -> None:
        pass


def client(answers) -> tuple[SlurmClient, Replay, list[float]]:
    sleeps: list[float] = []
    transport = Replay(answers)
    return (
        SlurmClient(transport, RetryPolicy(attempts=4, backoff_s=0.5), sleeps.append),
        transport,
        sleeps,
    )


def test_status_of_many_jobs_is_one_squeue_when_the_controller_knows_them_all():
    c, t, _ = client({"squeue": [(0, rec("squeue_mixed.txt"), "")]})
    ids = ["31", "32", "33", "34", "35", "36", "38"]
    got = c.status(ids)
    assert t.programs() == ["squeue"]
    assert t.calls[0][3] == "--jobs=31,32,33,34,35,36,38"
    assert got["32"].outcome is Outcome.FAILED and got["32"].exit_code == 3


def test_jobs_squeue_forgot_are_read_from_exit_files_then_sacct():
    c, t, _ = client(
        {
            "squeue": [(0, "31|COMPLETED|None|0\n", "")],
            "grep": [(2, "/o/slurm/jf-x-32.exit:1\n", "")],
            "sacct": [(0, rec("sacct_mixed.txt"), "")],
        }
    )
    got = c.status(
        ["31", "32", "35"], {"32": "/o/slurm/jf-x-32.exit", "35": "/o/slurm/jf-y-35.exit"}
    )
    assert t.programs() == ["squeue", "grep", "sacct"]
    assert t.calls[2][4] == "--jobs=35", "sacct only for jobs no other source knows"
    assert (got["31"].source, got["32"].source, got["35"].source) == (
        "squeue",
        "exit_file",
        "sacct",
    )
    assert got["32"].outcome is Outcome.FAILED
    assert got["35"].outcome is Outcome.RETRYABLE


def test_a_lone_unknown_id_makes_squeue_fail_and_is_unknown_not_an_error():
    c, _, _ = client(
        {
            "squeue": [(1, rec("squeue_invalid_single.out"), rec("squeue_invalid_single.err"))],
            "sacct": [(0, "", "")],
        }
    )
    got = c.status(["99999"])
    assert got["99999"].outcome is Outcome.UNKNOWN


def test_sacct_lag_running_in_sacct_but_gone_from_squeue_is_unknown():
    c, _, _ = client({"squeue": [(0, "", "")], "sacct": [(0, "36|RUNNING|0:0|None\n", "")]})
    status = c.status(["36"])["36"]
    assert status.outcome is Outcome.UNKNOWN and "accounting lag" in status.reason


def test_without_accounting_sacct_is_asked_once_and_then_never_again():
    c, t, _ = client({"squeue": [(0, "", ""), (0, "", "")], "sacct": [(1, "", ACCT_OFF)]})
    assert c.status(["5"])["5"].outcome is Outcome.UNKNOWN
    assert c.status(["5"])["5"].outcome is Outcome.UNKNOWN
    assert t.programs() == ["squeue", "sacct", "squeue"]
    assert c.accounting.enabled is False


def test_a_job_no_source_knows_is_lost_after_the_grace_period_never_success():
    """The controller purged it before accounting saw it (seen in the deployment's slurmctld
    kill test): the wait's retry resubmits it, at most max_resubmits times."""
    now = [0.0]
    tracker = StatusTracker(grace_s=60, clock=lambda: now[0])
    c, _, _ = client({"squeue": [(0, "", "")] * 3, "sacct": [(0, "", "")] * 3})
    assert tracker.resolve(c.status(["7"]))["7"].outcome is Outcome.UNKNOWN
    now[0] = 59
    assert tracker.resolve(c.status(["7"]))["7"].outcome is Outcome.UNKNOWN
    now[0] = 61
    lost = tracker.resolve(c.status(["7"]))["7"]
    assert lost.outcome is Outcome.RETRYABLE and lost.state == "LOST"
    assert "unknown for 61s" in lost.reason


def test_a_job_the_controller_lost_in_a_restart_is_retryable_after_the_grace_period():
    """Recorded after `kill -9 slurmctld` a second after sbatch: the restarted controller
    purged the unsaved job ("Purged files for defunct batch JobId=290"), sacct still says
    PENDING, squeue knows no such id, and no exit file was written."""
    now = [0.0]
    tracker = StatusTracker(grace_s=60, clock=lambda: now[0])
    invalid = (1, "", rec("squeue_invalid_single.err"))
    pending = (0, rec("sacct_lost_pending.txt"), "")
    c, _, _ = client({"squeue": [invalid] * 2, "sacct": [pending] * 2})
    assert tracker.resolve(c.status(["290"]))["290"].outcome is Outcome.UNKNOWN
    now[0] = 61
    lost = tracker.resolve(c.status(["290"]))["290"]
    assert lost.outcome is Outcome.RETRYABLE and lost.state == "LOST"
    assert "sacct says PENDING" in lost.reason


def test_transient_controller_errors_are_retried_with_backoff():
    c, t, sleeps = client(
        {
            "squeue": [
                (1, "", SOCKET_TIMEOUT),
                (1, "", SOCKET_TIMEOUT),
                (0, rec("squeue_mixed.txt"), ""),
            ]
        }
    )
    assert c.status(["31"])["31"].outcome is Outcome.SUCCEEDED
    assert sleeps == [0.5, 1.0]


def test_retries_are_bounded_and_the_error_carries_stderr():
    c, _, sleeps = client({"squeue": [(1, "", SOCKET_TIMEOUT)] * 4})
    with pytest.raises(SlurmError, match="Socket timed out"):
        c.status(["31"])
    assert len(sleeps) == 3


def test_other_errors_are_raised_at_once_with_stderr():
    c, _, sleeps = client({"scancel": [(1, "", "scancel: error: Access/permission denied\n")]})
    with pytest.raises(SlurmError, match="permission denied"):
        c.cancel(["5"])
    assert sleeps == []


def test_cancel_is_idempotent():
    c, _, _ = client(
        {
            "scancel": [
                (1, "", "scancel: error: Kill job error on job id 9: Invalid job id specified\n")
            ]
        }
    )
    c.cancel(["9"])


REQ = SubmitRequest(
    tag="t1",
    batch=BatchSpec("g-0000", (JobSpec("a", "true"),)),
    slurm=SlurmParams(),
    output_dir="/o",
)


def test_submit_adopts_a_job_already_submitted_with_the_same_tag():
    c, t, _ = client({"squeue": [(0, "41|RUNNING|None|0\n", "")]})
    job = c.submit(REQ)
    assert (job.job_id, job.adopted) == ("41", True)
    assert "sbatch" not in t.programs()


def test_submit_without_adopt_goes_straight_to_sbatch():
    c, t, _ = client({"mkdir": [(0, "", "")], "sbatch": [(0, rec("sbatch_parsable.txt"), "")]})
    job = c.submit(REQ, adopt=False)
    assert (job.job_id, job.adopted) == ("36", False)
    assert t.programs() == ["mkdir", "sbatch"]
    assert job.exit_file == "/o/slurm/jf-t1-36.exit"


def test_a_lost_sbatch_answer_restarts_the_submission_which_adopts_instead_of_resubmitting():
    c, t, _ = client(
        {
            "squeue": [(0, "", ""), (0, "36|PENDING|None|0\n", "")],
            "sacct": [(0, "", "")],
            "mkdir": [(0, "", "")],
            "sbatch": [TransportError("SSH connection lost")],
        }
    )
    job = c.submit(REQ)
    assert (job.job_id, job.adopted) == ("36", True)
    assert t.programs().count("sbatch") == 1


def test_async_client_runs_the_same_operations():
    transport = AsyncReplay(
        {
            "squeue": [(1, "", SOCKET_TIMEOUT), (0, rec("squeue_mixed.txt"), "")],
            "scancel": [(0, "", "")],
            "tail": [(0, "last line\n", "")],
        }
    )
    c = AsyncSlurmClient(transport, RetryPolicy(attempts=3, backoff_s=0.001))

    async def go():
        statuses = await c.status(["31", "34"])
        await c.cancel(["34"])
        return statuses, await c.tail_logs("/o/x.out", 5)

    statuses, tail = asyncio.run(go())
    assert statuses["34"].outcome is Outcome.CANCELED and tail == "last line\n"
    assert transport.calls[-1] == ("tail", "-n", "5", "--", "/o/x.out")


def test_result_records_are_read_through_the_transport_newest_first():
    lines = (
        '{"name":"a","status":"finished","return_code":1,"exec_time_s":1,"start":1,"end":2,'
        '"batch":"b"}\n'
        '{"name":"a","status":"finished","return_code":0,"exec_time_s":1,"start":3,"end":4,'
        '"batch":"b-rerun"}\n'
        '{"name":"b","status":"canceled","return_code":null,"exec_time_s":0,"start":null,'
        '"end":2,"batch":"b"}\n{"name":"c","sta'
    )
    c, t, _ = client({"sh": [(0, lines, "")]})
    records = c.read_results("/o/run 1")
    assert t.calls[0][-1] == "/o/run 1", "the directory is an argument, not part of the script"
    assert records["a"].succeeded and records["b"].status == "canceled" and "c" not in records


def test_a_refusal_is_a_rejection_but_transport_and_transient_errors_are_not():
    from airflow_jobforge.errors import SlurmError
    from airflow_jobforge.slurm.client import is_rejection
    from airflow_jobforge.slurm.transport import TransportError

    refused = "sbatch failed with exit code 1: sbatch: error: invalid partition specified: x"
    assert is_rejection(SlurmError(refused))
    assert not is_rejection(SlurmError("sbatch failed: Unable to contact slurm controller"))
    assert not is_rejection(SlurmError("giving up after repeated transient SLURM errors"))
    assert not is_rejection(TransportError("ssh: connection lost"))
    assert not is_rejection(OSError("no route"))
