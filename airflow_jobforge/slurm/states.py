"""Every SLURM job state -> what it means for us. Unknown is never success."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from airflow_jobforge.rundir.events import BATCH_ENDED, Event, ended_summary


class Outcome(str, Enum):
    RUNNING = "running"  # not terminal: pending, running, requeued, suspended, ...
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYABLE = "failed_retryable"  # the node/boot/preemption failed, not the jobs
    CANCELED = "canceled"
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
    "CANCELLED": Outcome.CANCELED,
    "REVOKED": Outcome.CANCELED,
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
    array_job_id: str | None = None  # a task of this job array
    array_task: str | None = None  # its index ("2-3%2": the pending rest of the array)

    @property
    def terminal(self) -> bool:
        return self.outcome.terminal


def outcome_of_exit_code(code: int) -> Outcome:
    """The batch script's exit-code file: 0 all jobs ok; 128+N killed by signal N."""
    if code == 0:
        return Outcome.SUCCEEDED
    if code in (128 + 15, 128 + 2, 128 + 9):
        return Outcome.CANCELED
    return Outcome.FAILED


# Which task state stands for a whole array that left the queue: the one asking most of the
# wait task. A node failure resubmits (the tasks without a record), OOM/TIMEOUT may retry with
# more, a cancellation is final, a failed task's runner says its jobs failed.
_ARRAY_RANK = {
    Outcome.RETRYABLE: 5,
    Outcome.UNKNOWN: 4,
    Outcome.CANCELED: 2,
    Outcome.FAILED: 1,
    Outcome.SUCCEEDED: 0,
}
_RESOURCE = ("OUT_OF_MEMORY", "TIMEOUT")


def _array_rank(status: JobStatus) -> int:
    if normalize_state(status.state) in _RESOURCE:
        return 3
    return _ARRAY_RANK.get(status.outcome, 1)


def aggregate_array(job_id: str, tasks: list[JobStatus]) -> JobStatus:
    """One status for a job array from its tasks' statuses: running while any task is;
    after that the most demanding task's state, with a count of every state in the reason."""
    if not tasks:
        return JobStatus(job_id=job_id, state="UNKNOWN", outcome=Outcome.UNKNOWN)
    counts: dict[str, int] = {}
    for task in tasks:
        state = normalize_state(task.state)
        counts[state] = counts.get(state, 0) + 1
    summary = "array tasks: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    active = [t for t in tasks if t.outcome is Outcome.RUNNING]
    if active:
        running = any(normalize_state(t.state) != "PENDING" for t in active)
        return JobStatus(
            job_id=job_id,
            state="RUNNING" if running else "PENDING",
            outcome=Outcome.RUNNING,
            reason=summary,
            source=tasks[0].source,
        )
    worst = max(tasks, key=_array_rank)
    # A task whose runner exited 1 ran its job, which failed: the array ran (exit code 1).
    exit_code = worst.exit_code
    return JobStatus(
        job_id=job_id,
        state=worst.state,
        outcome=worst.outcome,
        exit_code=exit_code,
        reason=f"{summary}" + (f"; {worst.reason}" if worst.reason else ""),
        source=worst.source,
    )


def batch_ended_event(batch: str, hpc_job_id: str | None, status: JobStatus) -> Event:
    """`batch_ended` for the run's event log: the job's state, reason and exit code."""
    return Event(
        BATCH_ENDED,
        batch=batch,
        hpc_job_id=hpc_job_id,
        message=ended_summary(hpc_job_id, status.state, status.reason),
        data={"state": normalize_state(status.state), "exit_code": status.exit_code},
    )
