"""Records for jobs that got none: nothing is lost, even when a batch never ran.

A node runner records every job of a batch it ran, also when it is terminated. A batch that
never started (canceled while pending, refused at launch) or whose runner was SIGKILLed
leaves jobs without a record; whoever sees that batch end — the wait task, `jobforge
cancel`, a user's kill — writes them here, into a file of its own per batch, so it never
interleaves with a runner's writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from airflow_jobforge.rundir.records import RESULTS_DIR, ResultRecord, Status


def completion_file(run_dir: str, batch: str) -> str:
    return f"{run_dir.rstrip('/')}/{RESULTS_DIR}/{batch}.completed.jsonl"


def unrecorded(
    names: Iterable[str],
    records: Mapping[str, ResultRecord],
    *,
    batch: str,
    status: Status,
    reason: str,
    hpc_job_id: str | None = None,
    now: float | None = None,
) -> list[ResultRecord]:
    """A `status` record for every job of `names` that has no record at all."""
    end = time.time() if now is None else now
    return [
        ResultRecord(
            name=name,
            status=status,
            return_code=None,
            exec_time_s=0.0,
            start=None,
            end=end,
            batch=batch,
            hpc_job_id=hpc_job_id,
            reason=reason,
        )
        for name in names
        if name not in records
    ]


def record_lines(records: Iterable[ResultRecord]) -> str:
    return "".join(record.to_json() + "\n" for record in records)
