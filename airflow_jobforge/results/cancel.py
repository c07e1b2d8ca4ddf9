"""`jobforge cancel`: stop every SLURM job of a run, and leave every job of it a record.

A run's batches are found in the queue by job name: each is `jf-<run key>.<batch>.<kind>`,
and the run key is read from the run dir (manifest, the names of `slurm/` files, or
`batch_submitted` events). After scancel the node runners get SIGTERM and record their
running jobs `missing` and unstarted ones `canceled`, so we wait (bounded) for the batches to
leave the queue before looking. Jobs still without a record — batches that were pending or
never submitted, a runner SIGKILLed — get one here, in one file per batch of our own, so
that it never interleaves with a runner's writes. A newer record (a runner that was slow to
write) still wins: readers take the latest end.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from airflow_jobforge.results.show import JOB_OUTPUT_DIR, expected_jobs
from airflow_jobforge.rundir.completion import unrecorded
from airflow_jobforge.rundir.events import BATCH_SUBMITTED, CANCELED_BY_USER, EventLog, read_events
from airflow_jobforge.rundir.manifest import read_manifest
from airflow_jobforge.rundir.records import (
    RESULTS_DIR,
    ResultRecord,
    ResultsWriter,
    collect_results,
)
from airflow_jobforge.slurm.client import QueuedJob
from airflow_jobforge.slurm.script import JOB_NAME_PREFIX

REASON = "run canceled by user (jobforge cancel)"
EVENT_SOURCE = "cancel"
WAIT_S = 30.0
UNBATCHED = "unbatched"
# slurm/jf-<run key>.<batch>.<kind>-<job id>.<out|err|exit>; a run key is 12 hex digits.
_SLURM_FILE = re.compile(rf"{re.escape(JOB_NAME_PREFIX)}([0-9a-f]{{12}})\.[^.]+\..+-[^-]+\.\w+")
_KEY = re.compile(r"[0-9a-f]{12}")


class QueueClient(Protocol):
    """What cancelling needs of a client (SlurmClient, LocalClient)."""

    def queued(self, prefix: str) -> list[QueuedJob]: ...

    def cancel(self, job_ids: Sequence[str]) -> None: ...


def run_keys(run_dir: str | os.PathLike[str]) -> list[str]:
    """The run key(s) a run dir's batches were submitted under: the manifest's, else those
    in the names of its SLURM files, else those of its `batch_submitted` events' tags."""
    manifest = read_manifest(run_dir)
    if manifest is not None and manifest.run_key:
        return [manifest.run_key]
    keys = set()
    try:
        names = os.listdir(Path(run_dir) / "slurm")
    except OSError:
        names = []
    for name in names:
        match = _SLURM_FILE.fullmatch(name)
        if match:
            keys.add(match.group(1))
    if not keys:
        for event in read_events(run_dir):
            tag = event.data.get("tag") if isinstance(event.data, dict) else None
            if event.type == BATCH_SUBMITTED and isinstance(tag, str):
                key = tag.split(".", 1)[0]
                if _KEY.fullmatch(key):
                    keys.add(key)
    return sorted(keys)


def batch_of_job_name(job_name: str) -> str | None:
    """`jf-<key>.<batch>.<kind>` -> batch (group names hold no dots)."""
    parts = job_name.removeprefix(JOB_NAME_PREFIX).split(".")
    return parts[1] if len(parts) >= 3 else None


def queued_jobs(client: QueueClient, keys: Sequence[str]) -> list[QueuedJob]:
    seen: dict[str, QueuedJob] = {}
    for key in keys:
        for job in client.queued(f"{JOB_NAME_PREFIX}{key}."):
            seen.setdefault(job.job_id, job)
    return list(seen.values())


@dataclass(frozen=True)
class CancelReport:
    run_dir: Path
    run_keys: list[str]
    canceled: list[QueuedJob]
    still_queued: list[QueuedJob]
    recorded: dict[str, list[str]] = field(default_factory=dict)
    waited_s: float = WAIT_S

    def lines(self) -> list[str]:
        out = []
        if not self.run_keys:
            out.append(
                f"{self.run_dir}: no run key found (run.json, slurm/ files or submit events): "
                "no queued job can belong to it"
            )
        elif self.canceled:
            ids = ", ".join(j.job_id for j in self.canceled[:20])
            more = f" and {len(self.canceled) - 20} more" if len(self.canceled) > 20 else ""
            out.append(f"Canceled {len(self.canceled)} SLURM job(s) of the run: {ids}{more}")
        else:
            out.append(f"No queued SLURM job of run key(s) {', '.join(self.run_keys)}")
        if self.still_queued:
            out.append(
                f"Still in the queue after {self.waited_s:.0f} s: "
                + ", ".join(f"{j.job_id} ({j.state})" for j in self.still_queued)
            )
        for status, names in self.recorded.items():
            if names:
                out.append(
                    f"Recorded {len(names)} job(s) without a result as {status}: "
                    + ", ".join(names[:10])
                    + (" ..." if len(names) > 10 else "")
                )
        if not any(self.recorded.values()):
            out.append("Every job of the run already has a result record")
        return out


def cancel_run(
    run_dir: str | os.PathLike[str],
    client: QueueClient,
    *,
    wait_s: float = WAIT_S,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> CancelReport:
    """Cancel the run's queued batches, wait for them to leave the queue, then record every
    expected job still without a record (see the module doc)."""
    run_dir = Path(run_dir)
    keys = run_keys(run_dir)
    canceled = queued_jobs(client, keys)
    still: list[QueuedJob] = []
    if canceled:
        client.cancel([j.job_id for j in canceled])
        ids = {j.job_id for j in canceled}
        deadline = clock() + wait_s
        while True:
            still = [j for j in queued_jobs(client, keys) if j.job_id in ids]
            if not still or clock() >= deadline:
                break
            sleep(poll_s)
    ran = {
        batch: job
        for job in canceled
        if job.state not in ("PENDING", "PD") and (batch := batch_of_job_name(job.job_name))
    }
    hpc_ids = {batch: job.job_id for job in canceled if (batch := batch_of_job_name(job.job_name))}
    records = collect_results(run_dir)
    expected = expected_jobs(run_dir, records, read_manifest(run_dir))
    recorded = record_unrecorded(run_dir, expected, records, ran, hpc_ids)
    EventLog(run_dir, EVENT_SOURCE).emit(
        CANCELED_BY_USER,
        message=f"{len(canceled)} SLURM job(s) canceled, "
        + ", ".join(f"{len(v)} jobs recorded {k}" for k, v in recorded.items()),
        data={
            "slurm_job_ids": [j.job_id for j in canceled],
            "still_queued": [j.job_id for j in still],
            "run_keys": keys,
            **{f"recorded_{k}": len(v) for k, v in recorded.items()},
        },
    )
    return CancelReport(run_dir, keys, canceled, still, recorded, wait_s)


def record_unrecorded(
    run_dir: Path,
    expected: dict[str, str | None],
    records: dict[str, ResultRecord],
    ran: dict[str, QueuedJob],
    hpc_ids: dict[str, str],
) -> dict[str, list[str]]:
    """A record for every expected job without one: `missing` when its batch was running and
    its output file shows it had started (its runner died without recording it), else
    `canceled`. Written to `results/<batch>-canceled.jsonl`."""
    by_batch: dict[str, list[str]] = {}
    for name, batch in expected.items():
        if name not in records:
            by_batch.setdefault(batch or UNBATCHED, []).append(name)
    recorded: dict[str, list[str]] = {"canceled": [], "missing": []}
    now = time.time()
    for batch, names in by_batch.items():
        started = set()
        if batch in ran:
            started = {n for n in names if (run_dir / JOB_OUTPUT_DIR / f"{n}.out").exists()}
        new: list[ResultRecord] = []
        for status, group in (
            ("missing", [n for n in names if n in started]),
            ("canceled", [n for n in names if n not in started]),
        ):
            reason = REASON if status == "canceled" else f"{REASON}; its batch left no record"
            new += unrecorded(
                group,
                records,
                batch=batch,
                status=status,
                reason=reason,
                hpc_job_id=hpc_ids.get(batch),
                now=now,
            )
            recorded[status] += group
        writer = ResultsWriter(run_dir / RESULTS_DIR / f"{batch}-canceled.jsonl")
        try:
            for record in new:
                writer.append(record)
        finally:
            writer.close()
    return recorded
