"""A run's event log: what happened to its batches and jobs, in time order, as JSON lines.

Several writers on several hosts add to it: the node runner of every batch (started on node
X, node setup failed, job failed, batch ended), the Airflow tasks (submitted, adopted,
resubmitted, ended with SLURM state S, retry with more resources, canceled by a user) and
`jobforge cancel`. O_APPEND is not atomic between hosts on NFS, so each writer has a file of
its own under `<run dir>/events/`; the log is those files merged by time. Events are
evidence for a person, never state a decision reads: writing one never raises.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EVENTS_DIR = "events"

BATCH_SUBMITTED = "batch_submitted"
BATCH_ADOPTED = "batch_adopted"
BATCH_RESUBMITTED = "batch_resubmitted"
BATCH_STARTED = "batch_started"
NODE_SETUP_FAILED = "node_setup_failed"
JOB_FAILED = "job_failed"
BATCH_ENDED = "batch_ended"
RETRY_MORE_RESOURCES = "retry_more_resources"
CANCELED_BY_USER = "canceled_by_user"
RECORDS_COMPLETED = "records_completed"
SPARK_CLUSTER_READY = "spark_cluster_ready"
SPARK_CLUSTER_FAILED = "spark_cluster_failed"
JOBS_LEFT = "jobs_left"  # a runner near its walltime left jobs unstarted
BATCH_CONTINUED = "batch_continued"  # the wait submitted them as a continuation
BATCH_SURPLUS_CANCELLED = "batch_surplus_cancelled"  # pending; its work ran elsewhere
EVENT_TYPES = (
    BATCH_SUBMITTED,
    BATCH_ADOPTED,
    BATCH_RESUBMITTED,
    BATCH_STARTED,
    NODE_SETUP_FAILED,
    JOB_FAILED,
    BATCH_ENDED,
    RETRY_MORE_RESOURCES,
    CANCELED_BY_USER,
    RECORDS_COMPLETED,
    SPARK_CLUSTER_READY,
    SPARK_CLUSTER_FAILED,
    JOBS_LEFT,
    BATCH_CONTINUED,
    BATCH_SURPLUS_CANCELLED,
)


@dataclass(frozen=True)
class Event:
    """One thing that happened. `data` holds the type's details (state, new limits...)."""

    type: str
    t: float = field(default_factory=time.time)
    batch: str | None = None
    job: str | None = None
    hpc_job_id: str | None = None
    host: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {k: v for k, v in asdict(self).items() if v not in (None, "", {})},
            separators=(",", ":"),
            default=str,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def line(self) -> str:
        """One human line: time, type, where, what."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.t))
        where = " ".join(
            f"{k}={v}"
            for k, v in (
                ("batch", self.batch),
                ("job", self.job),
                ("slurm_job", self.hpc_job_id),
                ("host", self.host),
            )
            if v
        )
        return f"{stamp}  {self.type:<20} {where}  {self.message}".rstrip()


def ended_summary(hpc_job_id: str | None, state: str, reason: str | None) -> str:
    return f"SLURM job {hpc_job_id} ended {state}" + (f" ({reason})" if reason else "")


def events_file(run_dir: str | os.PathLike[str], source: str) -> Path:
    return Path(run_dir) / EVENTS_DIR / f"{source}.jsonl"


def event_text(events: Iterable[Event]) -> str:
    return "".join(event.to_json() + "\n" for event in events)


def append_events(path: str | os.PathLike[str], events: Sequence[Event]) -> bool:
    """Append in one write (O_APPEND); False when the file system refused (full disk...)."""
    if not events:
        return True
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, event_text(events).encode())
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


class EventLog:
    """A writer's own event file; best effort: a full disk loses events, never a job."""

    def __init__(self, run_dir: str | os.PathLike[str], source: str) -> None:
        self.path = events_file(run_dir, source)
        self.host = socket.gethostname()

    def emit(self, type: str, **fields: Any) -> Event:
        fields.setdefault("host", self.host)
        event = Event(type=type, **fields)
        append_events(self.path, [event])
        return event


def parse_event_lines(lines: Iterable[str]) -> Iterator[Event]:
    """Events from JSON lines; torn or foreign lines are skipped."""
    for line in lines:
        try:
            data = json.loads(line)
            if isinstance(data, dict) and isinstance(data.get("type"), str):
                yield Event.from_dict(data)
        except (ValueError, TypeError):
            continue


def read_events(run_dir: str | os.PathLike[str]) -> list[Event]:
    """Every writer's events of a run, merged in time order."""
    events: list[Event] = []
    for path in sorted((Path(run_dir) / EVENTS_DIR).glob("*.jsonl")):
        with open(path, encoding="utf-8", errors="replace") as handle:
            events.extend(parse_event_lines(line for line in handle if line.endswith("\n")))
    return sorted_events(events)


def sorted_events(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e.t)


def filter_events(events: Iterable[Event], types: Sequence[str] | None) -> list[Event]:
    wanted = set(types or ())
    return [e for e in events if not wanted or e.type in wanted]
