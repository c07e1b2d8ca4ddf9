"""Result records: one JSON line per job end, appended by the node runner, read by everyone.

Each record is written with a single `write` on an O_APPEND descriptor, so a crash leaves at
worst a partial *last* line, which readers skip. One file per batch: O_APPEND is not atomic
between hosts on NFS, and batches of one run may land on different nodes.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["finished", "canceled", "missing"]
RESULTS_DIR = "results"
# The node runner's (and batch script's) exit code when it could not write its records or
# batch file under the output dir (full disk, quota, read-only): sysexits' EX_IOERR. Distinct
# from 1 (some job failed), so a status reader can say why records are missing.
EXIT_OUTPUT_UNWRITABLE = 74
NOT_WRITABLE = "output dir not writable"


# Written even when None: readers of older versions expect them.
_ALWAYS = frozenset({"return_code", "start", "hpc_job_id", "reason"})


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
    # Where and with what it ran (the node runner's wait4 rusage of the job's process tree):
    # known for jobs that ran; None for canceled ones and records written by older runners.
    host: str | None = None
    max_rss_bytes: int | None = None
    cpu_time_s: float | None = None
    # The Spark applications the job ran (their ids; `rundir.spark` reads their event logs).
    spark_apps: list[str] | None = None
    # The batch that ran it, when not its own (`batch`): work shared between batches.
    ran_in: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "finished" and self.return_code == 0

    def to_json(self) -> str:
        # Scalars and spark_apps' short list: asdict's deep copy would cost the node runner
        # ~11 µs a job.
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return json.dumps(
            {k: v for k, v in fields.items() if v is not None or k in _ALWAYS},
            separators=(",", ":"),
        )

    @classmethod
    def from_dict(cls, data: dict) -> ResultRecord:
        return cls(*map(data.get, _FIELDS))


_FIELDS = tuple(ResultRecord.__dataclass_fields__)  # in the order __init__ takes them


def results_file(output_dir: str | os.PathLike[str], batch: str) -> Path:
    return Path(output_dir) / RESULTS_DIR / f"{batch}.jsonl"


class ResultsWriter:
    """Appends records to one batch's results file.

    A full disk may take part of a record (a short write): the torn fragment then gets its
    own line, ended before the next record, so readers skip it instead of losing both.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._torn = False

    def append(self, record: ResultRecord) -> None:
        """Raises OSError (ENOSPC, EDQUOT, EIO...) when the record did not reach the file."""
        data = (record.to_json() + "\n").encode()
        if self._torn:
            data = b"\n" + data
        written = os.write(self._fd, data)
        if written != len(data):
            self._torn = True
            raise OSError(
                errno.ENOSPC,
                f"{os.strerror(errno.ENOSPC)} (wrote {written} of {len(data)} bytes)",
                str(self.path),
            )
        self._torn = False

    def close(self) -> None:
        os.close(self._fd)


def unwritable_reason(directory: str | os.PathLike[str]) -> str | None:
    """Why a file cannot be written in `directory` now (full disk, quota, read-only), or None.

    Probes with a one-byte write: creating an empty file often still works on a full disk,
    writing data does not. A directory that does not exist is no evidence, so None.
    """
    probe = Path(directory) / f".jobforge-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{exc.strerror or exc}: {directory}"
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return None


def parse_record_lines(lines: Iterable[str]) -> Iterator[ResultRecord]:
    """Records from JSON lines, skipping torn or corrupt ones instead of failing on them.

    The lines are decoded as one JSON array first: one decoder call instead of one a line
    (with `from_dict` mapping fields in C) takes a quarter off the summary's read of a
    100,000-job run (1.3-1.4 s to 1.0-1.2 s of CPU here). Only a file with a bad line goes
    line by line."""
    lines = list(lines)
    try:
        decoded = json.loads("[" + ",".join(lines) + "]")
    except ValueError:
        decoded = None
    if decoded is None or len(decoded) != len(lines):
        yield from _parse_one_by_one(lines)
        return
    for data in decoded:
        try:
            yield ResultRecord.from_dict(data)
        except (TypeError, AttributeError):
            continue


def _parse_one_by_one(lines: Iterable[str]) -> Iterator[ResultRecord]:
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
    """JADE's four counts. Expected jobs without any record count as missing; `no_record`
    names them and `no_record_reason` says why, when the caller knows (a full output dir)."""

    successful: int
    failed: int
    canceled: int
    missing: int
    total: int
    no_record: tuple[str, ...] = ()
    no_record_reason: str | None = None

    def __str__(self) -> str:
        text = (
            f"{self.total} jobs: {self.successful} successful, {self.failed} failed, "
            f"{self.canceled} canceled, {self.missing} missing"
        )
        if self.no_record and self.no_record_reason:
            text += f" ({len(self.no_record)} without a record: {self.no_record_reason})"
        return text


def summarize(
    records: Iterable[ResultRecord],
    expected: Iterable[str] | None = None,
    no_record_reason: str | None = None,
) -> Summary:
    """Count outcomes; expected jobs without a record count as missing, so none is lost."""
    by_name = {r.name: r for r in records}
    names = set(by_name) if expected is None else set(expected)
    successful = failed = canceled = missing = 0
    no_record = []
    for name in names:
        record = by_name.get(name)
        if record is None:
            no_record.append(name)
        if record is None or record.status == "missing":
            missing += 1
        elif record.status == "canceled":
            canceled += 1
        elif record.succeeded:
            successful += 1
        else:
            failed += 1
    return Summary(
        successful,
        failed,
        canceled,
        missing,
        len(names),
        tuple(sorted(no_record)),
        no_record_reason if no_record else None,
    )


def job_state(record: ResultRecord | None) -> str:
    """One word per job for tables: ok, failed, canceled, missing."""
    if record is None or record.status == "missing":
        return "missing"
    if record.status == "canceled":
        return "canceled"
    return "ok" if record.succeeded else "failed"


def results_table(
    names: Sequence[str],
    records: Mapping[str, ResultRecord],
    *,
    no_record_reason: str | None = None,
    stderr_tail: Callable[[str], str] | None = None,
    max_rows: int | None = 40,
    max_tails: int = 5,
    columns: Sequence[tuple[str, Callable[[str], str]]] = (),
) -> str:
    """Per job: name, state, return code, exec time, why; failed jobs with their stderr tail.

    Up to `max_rows` jobs every job is listed (None: always every job). A larger run lists
    only the jobs that did not succeed (at most `max_rows`) and counts the rest: a user of
    10,000 jobs needs the failures, not 10,000 lines. `stderr_tail(name)` gives the last lines
    of a job's stderr. `columns` are more (header, cell of a job name) columns, put before the
    reason; a column empty in every listed row is left out.
    """
    shown = list(names)
    hidden_ok = 0
    if max_rows is not None and len(shown) > max_rows:
        bad = [n for n in shown if job_state(records.get(n)) != "ok"]
        hidden_ok = len(shown) - len(bad)
        shown = bad
    more = max(len(shown) - max_rows, 0) if max_rows is not None else 0
    shown = shown[:max_rows]
    width = min(max([len("job"), *(len(n) for n in shown)]), 40)
    extra = []
    for header, cell in columns:
        cells = [cell(name) for name in shown]
        if any(cells):
            extra.append((header, cells, max(len(header), *(len(c) for c in cells))))
    lines = [
        f"{'job':<{width}}  {'status':<8}  {'rc':>4}  {'time':>8}  "
        + "".join(f"{header:<{w}}  " for header, _, w in extra)
        + "reason"
    ]
    tails = 0
    for row, name in enumerate(shown):
        record = records.get(name)
        rc = "" if record is None or record.return_code is None else str(record.return_code)
        took = f"{record.exec_time_s:.2f}s" if record is not None and record.start else ""
        if record is None:
            why = f"unknown: {no_record_reason}" if no_record_reason else "no result record"
        else:
            why = record.reason or ""
        state = job_state(record)
        more_cells = "".join(f"{cells[row]:<{w}}  " for _, cells, w in extra)
        lines.append(f"{name:<{width}}  {state:<8}  {rc:>4}  {took:>8}  {more_cells}{why}".rstrip())
        if state == "failed" and stderr_tail is not None and tails < max_tails:
            tails += 1
            lines.extend(f"{'':<{width}}  | {line}" for line in stderr_tail(name).splitlines())
    if more:
        lines.append(f"... and {more} more jobs that did not succeed")
    if hidden_ok:
        lines.append(f"({hidden_ok} successful jobs not listed)")
    return "\n".join(lines)


def tail_file(path: str | os.PathLike[str], lines: int = 3, max_bytes: int = 64 * 1024) -> str:
    """The last lines of a (maybe huge, maybe absent) text file; reads only its end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "".join(text.splitlines(keepends=True)[-lines:])
