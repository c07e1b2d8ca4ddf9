"""Every SLURM job state -> what it means for us. Unknown is never success."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Outcome(str, Enum):
    RUNNING = "running"  # not terminal: pending, running, requeued, suspended, ...
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYABLE = "failed_retryable"  # the node/boot/preemption failed, not the jobs
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # no source knows the job (yet); resolved by StatusTracker's grace

    @property
    def terminal(self) -> bool:
        return self not in (Outcome.RUNNING, Outcome.UNKNOWN)


STATE_TABLE: dict[str, Outcome] = {
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
    "RESV_DEL_HOLD": Outcome.RUNNING,
    "SPECIAL_EXIT": Outcome.FAILED,
    "COMPLETED": Outcome.SUCCEEDED,
    "FAILED": Outcome.FAILED,
    "TIMEOUT": Outcome.FAILED,
    "OUT_OF_MEMORY": Outcome.FAILED,
    "DEADLINE": Outcome.FAILED,
    "CANCELLED": Outcome.CANCELLED,
    "REVOKED": Outcome.CANCELLED,
    "PREEMPTED": Outcome.RETRYABLE,
    "NODE_FAIL": Outcome.RETRYABLE,
    "BOOT_FAIL": Outcome.RETRYABLE,
}


def normalize_state(raw: str) -> str:
    """'CANCELLED by 123' -> 'CANCELLED'; sacct's truncation mark '+' is dropped."""
    return raw.strip().split(" ", 1)[0].rstrip("+").upper()


def classify_state(raw: str) -> Outcome:
    return STATE_TABLE.get(normalize_state(raw), Outcome.UNKNOWN)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: str
    outcome: Outcome
    exit_code: int | None = None
    reason: str | None = None
    source: str = "none"  # squeue | sacct | exit_file | none | tracker

    @property
    def terminal(self) -> bool:
        return self.outcome.terminal


def outcome_of_exit_code(code: int) -> Outcome:
    """The batch script's exit-code file: 0 all jobs ok; 128+N killed by signal N."""
    if code == 0:
        return Outcome.SUCCEEDED
    if code in (128 + 15, 128 + 2, 128 + 9):
        return Outcome.CANCELLED
    return Outcome.FAILED
