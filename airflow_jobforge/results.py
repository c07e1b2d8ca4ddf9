"""Result records: one JSON line per job end, appended by the node runner, read by everyone.

Each record is written with a single `write` on an O_APPEND descriptor, so a crash leaves at
worst a partial *last* line, which readers skip. One file per batch: O_APPEND is not atomic
between hosts on NFS, and batches of one run may land on different nodes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Status = Literal["finished", "canceled", "missing"]
RESULTS_DIR = "results"


@dataclass(frozen=True)
class ResultRecord:
    """How a job ended. `finished` ran (success iff return_code 0); `canceled` never ran;
    `missing` started but left no result (killed, walltime, node failure)."""

    name: str
    status: Status
    return_code: int | None
    exec_time_s: float
    start: float | None
    end: float
    batch: str
    hpc_job_id: str | None = None
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "finished" and self.return_code == 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> ResultRecord:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


def results_file(output_dir: str | os.PathLike[str], batch: str) -> Path:
    return Path(output_dir) / RESULTS_DIR / f"{batch}.jsonl"


class ResultsWriter:
    """Appends records to one batch's results file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: ResultRecord) -> None:
        data = (record.to_json() + "\n").encode()
        written = os.write(self._fd, data)
        if written != len(data):  # pragma: no cover - a full disk; the reader drops the tail
            raise OSError(f"short write to {self.path}")

    def close(self) -> None:
        os.close(self._fd)


def parse_record_lines(lines: Iterable[str]) -> Iterator[ResultRecord]:
    """Records from JSON lines, skipping torn or corrupt ones instead of failing on them."""
    for line in lines:
        try:
            yield ResultRecord.from_dict(json.loads(line))
        except (ValueError, TypeError, AttributeError):
            continue


def read_records(path: str | os.PathLike[str]) -> Iterator[ResultRecord]:
    """Records of one file; a last line without newline is being (or was torn while) written."""
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with handle:
        yield from parse_record_lines(line for line in handle if line.endswith("\n"))


def latest_records(records: Iterable[ResultRecord]) -> dict[str, ResultRecord]:
    """The newest record of every job: a re-run job's latest end wins."""
    latest: dict[str, ResultRecord] = {}
    for record in records:
        old = latest.get(record.name)
        if old is None or record.end >= old.end:
            latest[record.name] = record
    return latest


def collect_results(output_dir: str | os.PathLike[str]) -> dict[str, ResultRecord]:
    """The latest record of every job under an output dir."""
    directory = Path(output_dir) / RESULTS_DIR
    return latest_records(
        record for path in sorted(directory.glob("*.jsonl")) for record in read_records(path)
    )


@dataclass(frozen=True)
class Summary:
    """JADE's four counts, plus jobs with no record at all (never reached a node)."""

    successful: int
    failed: int
    canceled: int
    missing: int
    total: int

    def __str__(self) -> str:
        return (
            f"{self.total} jobs: {self.successful} successful, {self.failed} failed, "
            f"{self.canceled} canceled, {self.missing} missing"
        )


def summarize(records: Iterable[ResultRecord], expected: Iterable[str] | None = None) -> Summary:
    """Count outcomes; expected jobs without a record count as missing, so none is lost."""
    by_name = {r.name: r for r in records}
    names = set(by_name) if expected is None else set(expected)
    successful = failed = canceled = missing = 0
    for name in names:
        record = by_name.get(name)
        if record is None or record.status == "missing":
            missing += 1
        elif record.status == "canceled":
            canceled += 1
        elif record.succeeded:
            successful += 1
        else:
            failed += 1
    return Summary(successful, failed, canceled, missing, len(names))
