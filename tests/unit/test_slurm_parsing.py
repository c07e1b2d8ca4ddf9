"""Parsers and the state table, against outputs recorded on the project's real cluster
(tests/fixtures/slurm/record.sh re-records them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_jobforge.errors import SlurmError
from airflow_jobforge.slurm.parse import (
    parse_exit_files,
    parse_exit_text,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
)
from airflow_jobforge.slurm.states import STATE_TABLE, Outcome, classify_state

FIXTURES = Path(__file__).parent.parent / "fixtures" / "slurm"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_sbatch_parsable_with_and_without_cluster():
    assert parse_sbatch(fixture("sbatch_parsable.txt")) == "36"
    assert parse_sbatch(fixture("sbatch_parsable_cluster.txt")) == "37"


def test_unexpected_sbatch_output_is_an_error():
    with pytest.raises(SlurmError, match="unexpected sbatch output"):
        parse_sbatch("sbatch: error: Batch job submission failed")


def test_squeue_states_reasons_and_exit_codes():
    got = parse_squeue(fixture("squeue_mixed.txt"))
    summary = {i: (s.outcome, s.exit_code, s.reason) for i, s in got.items()}
    assert summary == {
        "31": (Outcome.SUCCEEDED, 0, None),
        "32": (Outcome.FAILED, 3, "NonZeroExitCode"),
        "33": (Outcome.FAILED, 128 + 9, "JobLaunchFailure"),
        "34": (Outcome.CANCELED, 128 + 15, None),
        "35": (Outcome.RUNNING, None, None),
        "36": (Outcome.RUNNING, None, "BeginTime"),
        "38": (Outcome.RUNNING, None, "BeginTime"),  # requeued: pending again, not terminal
    }


def test_squeue_node_fail_is_retryable():
    assert parse_squeue(fixture("squeue_node_fail.txt"))["35"].outcome is Outcome.RETRYABLE


def test_sacct_states_and_exit_codes():
    got = parse_sacct(fixture("sacct_mixed.txt"))
    assert {i: (s.outcome, s.exit_code) for i, s in got.items()} == {
        "31": (Outcome.SUCCEEDED, 0),
        "32": (Outcome.FAILED, 3),
        "33": (Outcome.FAILED, 128 + 9),
        "34": (Outcome.CANCELED, 0),
        "35": (Outcome.RETRYABLE, 0),
        "36": (Outcome.RUNNING, 0),
        "38": (Outcome.RUNNING, 0),
    }
    assert got["34"].state == "CANCELLED by 0"


def test_exit_code_files_as_printed_by_grep():
    out = "/o/slurm/jf-a-1.exit:0\n/o/slurm/jf-b-2.exit:1\n/o/slurm/jf-c-3.exit:143\n"
    got = parse_exit_files(
        out, {"/o/slurm/jf-a-1.exit": "1", "/o/slurm/jf-b-2.exit": "2", "/o/slurm/jf-c-3.exit": "3"}
    )
    assert {i: s.outcome for i, s in got.items()} == {
        "1": Outcome.SUCCEEDED,
        "2": Outcome.FAILED,
        "3": Outcome.CANCELED,
    }


ALL_STATES = {
    "PENDING": Outcome.RUNNING,
    "CONFIGURING": Outcome.RUNNING,
    "RUNNING": Outcome.RUNNING,
    "COMPLETING": Outcome.RUNNING,
    "SUSPENDED": Outcome.RUNNING,
    "STOPPED": Outcome.RUNNING,
    "RESIZING": Outcome.RUNNING,
    "REQUEUED": Outcome.RUNNING,
    "REQUEUE_HOLD": Outcome.RUNNING,
    "REQUEUE_FED": Outcome.RUNNING,
    "SIGNALING": Outcome.RUNNING,
    "STAGE_OUT": Outcome.RUNNING,
    "PREEMPTED": Outcome.RETRYABLE,
    "COMPLETED": Outcome.SUCCEEDED,
    "FAILED": Outcome.FAILED,
    "CANCELLED": Outcome.CANCELED,
    "TIMEOUT": Outcome.FAILED,
    "OUT_OF_MEMORY": Outcome.FAILED,
    "NODE_FAIL": Outcome.RETRYABLE,
    "BOOT_FAIL": Outcome.RETRYABLE,
    "DEADLINE": Outcome.FAILED,
    "REVOKED": Outcome.CANCELED,
    "SPECIAL_EXIT": Outcome.FAILED,
}


@pytest.mark.parametrize(("state", "outcome"), sorted(ALL_STATES.items()))
def test_every_slurm_state_has_a_meaning(state, outcome):
    assert classify_state(state) is outcome
    assert STATE_TABLE[state] is outcome


def test_canceled_by_uid_and_truncated_states_are_understood():
    assert classify_state("CANCELLED by 1234") is Outcome.CANCELED
    assert classify_state("CANCELLED+") is Outcome.CANCELED


def test_an_unknown_state_is_never_success():
    outcome = classify_state("SOMETHING_NEW")
    assert outcome is Outcome.UNKNOWN and not outcome.terminal


def test_exit_code_74_says_the_output_dir_was_not_writable():
    status = parse_exit_files("/o/x.exit:74", {"/o/x.exit": "5"})["5"]
    assert status.outcome is Outcome.FAILED
    assert status.reason.startswith("output dir not writable")


def test_a_fallback_exit_file_carries_the_reason_on_its_second_line():
    status = parse_exit_text("9", "1\ncannot write the exit file /o/x.exit: No space left\n")
    assert status.exit_code == 1 and status.outcome is Outcome.FAILED
    assert status.reason == "cannot write the exit file /o/x.exit: No space left"
    assert parse_exit_text("9", "") is None
    assert parse_exit_text("9", "0\n").outcome is Outcome.SUCCEEDED
