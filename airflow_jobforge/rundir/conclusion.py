"""What a wait task reports when its batch ends, gathered in one go where the connection is.

Over SSH every task that opens a client is a login on the login node, and real login nodes
throttle (sshd `MaxStartups`) or ban (fail2ban) bursts of them: a run of 1,000 batches whose
wait and result tasks each logged in made ~3,000 logins. The trigger already holds the
poller's connection when a batch ends, so it fetches there, in two or three commands, what
the wait and result tasks would each have fetched: the batch's records, the tails of its
SLURM logs and of its jobs' outputs. They travel in the trigger's event and the wait task's
XCom; the tasks downstream log in only to do something new (a rerun, a report).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_jobforge.rundir.records import ResultRecord

TAIL_LINES = 30
JOB_TAILS_ALL_MAX = 20
"""Batches of up to this many jobs bring every job's stdout and stderr tail (a task per job
logs them); larger ones the stderr tails of their first MAX_FAILED_TAILS unsuccessful jobs."""
MAX_FAILED_TAILS = 5
XCOM_KEY = "records"


def job_output_path(run_dir: str, name: str, suffix: str) -> str:
    return f"{run_dir.rstrip('/')}/job-output/{name}.{suffix}"


def job_tail_paths(
    run_dir: str, names: Iterable[str], records: Mapping[str, ResultRecord]
) -> list[str]:
    names = list(names)
    if len(names) <= JOB_TAILS_ALL_MAX:
        return [job_output_path(run_dir, n, s) for n in names for s in ("out", "err")]
    bad = [n for n in names if n not in records or not records[n].succeeded]
    return [job_output_path(run_dir, n, "err") for n in bad[:MAX_FAILED_TAILS]]


@dataclass
class Conclusion:
    """A batch's records and log tails as fetched when it ended (JSON in events and XCom)."""

    records: dict[str, ResultRecord] = field(default_factory=dict)
    tails: dict[str, str] = field(default_factory=dict)
    event_written: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": {name: dict(vars(r)) for name, r in self.records.items()},
            "tails": self.tails,
            "event_written": self.event_written,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Conclusion | None:
        if not data:
            return None
        return cls(
            records={n: ResultRecord(**r) for n, r in (data.get("records") or {}).items()},
            tails=dict(data.get("tails") or {}),
            event_written=bool(data.get("event_written")),
        )


def records_from_xcom(data: Mapping[str, Any] | None) -> dict[str, ResultRecord] | None:
    """The records a wait task pushed (XCOM_KEY), or None when it pushed none."""
    if data is None:
        return None
    return {name: ResultRecord(**record) for name, record in data.items()}
