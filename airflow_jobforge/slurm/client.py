"""SLURM client: submit (with adoption), status of many jobs in one call, cancel, log tails.

Each operation is written once, as a generator of `Command`s that receives each command's
result: pure, unit-testable with recorded outputs, and driven either by `SlurmClient`
(sync transport) or `AsyncSlurmClient` (async transport). The drivers own retries:
a command failing with a transient controller/SSH error is re-run with bounded backoff;
a non-idempotent one (sbatch) restarts its whole operation instead, whose first step looks
the job up by tag, so a lost sbatch answer never submits twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from airflow_jobforge.errors import SlurmError
from airflow_jobforge.rundir import ResultRecord, latest_records, parse_record_lines
from airflow_jobforge.rundir.claims import Claim, chunk_name, claim_json, parse_claim_lines
from airflow_jobforge.slurm.nodelist import expand_hostlist
from airflow_jobforge.slurm.parse import (
    ACCOUNTING_DISABLED,
    SACCT_FIELDS,
    SQUEUE_FIELDS,
    parse_exit_files,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
    unknown_status,
)
from airflow_jobforge.slurm.script import (
    SubmitRequest,
    check_tag,
    exit_file_path,
    job_name_for,
    sbatch_job,
)
from airflow_jobforge.slurm.states import JobStatus, Outcome, aggregate_array
from airflow_jobforge.slurm.transport import (
    AsyncTransport,
    CommandResult,
    Transport,
    TransportError,
)
from airflow_jobforge.slurm.usage import USAGE_FIELDS, BatchUsage, parse_sacct_usage

T = TypeVar("T")

TRANSIENT_MARKERS = (
    "socket timed out",
    "unable to contact slurm controller",
    "zero bytes were transmitted",
    "connection refused",
    "connection timed out",
    "resource temporarily unavailable",
    "transport endpoint is not connected",
    "slurm backup controller in standby mode",
    "try again",
)
SACCT_SINCE = "now-7days"


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    input: str | None = None
    idempotent: bool = True


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    job_name: str
    slurm_dir: str
    adopted: bool = False
    array: bool = False

    @property
    def _file_id(self) -> str:
        """An array's files are per task: its first task's stand for its logs."""
        return f"{self.job_id}_0" if self.array else self.job_id

    @property
    def stdout_path(self) -> str:
        return f"{self.slurm_dir}/{self.job_name}-{self._file_id}.out"

    @property
    def stderr_path(self) -> str:
        return f"{self.slurm_dir}/{self.job_name}-{self._file_id}.err"

    @property
    def exit_file(self) -> str:
        """An array's: a pattern of its tasks' exit files (`<name>-<id>_*.exit`)."""
        if self.array:
            return f"{self.slurm_dir}/{self.job_name}-{self.job_id}{ARRAY_EXIT_SUFFIX}"
        return exit_file_path(self.slurm_dir, self.job_name, self.job_id)


@dataclass(frozen=True)
class QueuedJob:
    """A job in the queue (pending, running, completing), as `jobforge cancel` finds it."""

    job_id: str
    job_name: str
    state: str


@dataclass
class Accounting:
    """Whether sacct works; learnt from its first answer and remembered."""

    enabled: bool | None = None

    def note(self, result: CommandResult) -> bool:
        if ACCOUNTING_DISABLED in result.stderr.lower():
            self.enabled = False
            return False
        self.enabled = True
        return True


Steps = Generator[Command, CommandResult, T]


def is_rejection(exc: BaseException) -> bool:
    """A SLURM command ran and refused (invalid partition, account, QOS, limits): retrying
    cannot help, unlike a transport failure or a transient controller error."""
    text = str(exc).lower()
    return (
        isinstance(exc, SlurmError)
        and not isinstance(exc, TransportError)
        and "giving up after repeated transient" not in text
        and not any(marker in text for marker in TRANSIENT_MARKERS)
    )


def is_transient(result: CommandResult) -> bool:
    text = result.stderr.lower()
    return result.returncode != 0 and any(marker in text for marker in TRANSIENT_MARKERS)


# --- operations ------------------------------------------------------------------------------
def find_steps(tag: str, accounting: Accounting, deep: bool = True) -> Steps[str | None]:
    """The id of our job submitted with `tag`, if any: squeue, then (deep) sacct."""
    name = job_name_for(tag)
    result = yield Command(
        ("squeue", "-h", "--me", "--states=all", f"--name={name}", f"--Format={SQUEUE_FIELDS}")
    )
    found = parse_squeue(result.check().stdout)
    if not found and deep and accounting.enabled is not False:
        result = yield Command(
            (
                "sacct",
                "-X",
                "-n",
                "-P",
                f"--name={name}",
                f"--format={SACCT_FIELDS}",
                f"--starttime={SACCT_SINCE}",
            )
        )
        if accounting.note(result):
            found = parse_sacct(result.check().stdout)
    ids = {status.array_job_id or job_id for job_id, status in found.items()}
    return max(ids, key=int) if ids else None


def submit_steps(
    request: SubmitRequest, accounting: Accounting, adopt: bool
) -> Steps[SubmittedJob]:
    prepared = sbatch_job(request)
    if adopt:
        existing = yield from find_steps(request.tag, accounting)
        if existing is not None:
            return SubmittedJob(
                existing, prepared.job_name, prepared.slurm_dir, adopted=True, array=request.array
            )
    # SLURM does not create the --output directory: without it the job fails to launch.
    (yield Command(("mkdir", "-p", "--", prepared.slurm_dir))).check()
    if request.batch.share:  # other batches' runners take its jobs while it is pending
        yield from write_steps(prepared.batch_file, prepared.batch_json)
    result = yield Command(tuple(prepared.argv), input=prepared.script, idempotent=False)
    job_id = parse_sbatch(result.check().stdout)
    return SubmittedJob(job_id, prepared.job_name, prepared.slurm_dir, array=request.array)


ARRAY_EXIT_SUFFIX = "_*.exit"
# Every task's exit file of the arrays named by (directory, `<name>-<id>`) pairs.
_GREP_ARRAY_EXITS = (
    'while [ "$#" -gt 1 ]; do (cd -- "$1" 2>/dev/null && grep -s -H "" -- "$2"_*.exit); '
    "shift 2; done; exit 0"
)


def _split_array_exit(pattern: str) -> tuple[str, str]:
    directory, _, name = pattern.removesuffix(ARRAY_EXIT_SUFFIX).rpartition("/")
    return directory or "/", name


def status_steps(
    job_ids: Iterable[str], exit_files: Mapping[str, str], accounting: Accounting
) -> Steps[dict[str, JobStatus]]:
    """Status of many jobs: ONE squeue; exit-code files and ONE sacct only for the rest.

    A job array counts as one job (its array job id): running while any task is in the
    queue, then the state of its tasks taken together (`aggregate_array`)."""
    ids = list(dict.fromkeys(str(i) for i in job_ids))
    if not ids:
        return {}
    result = yield Command(
        ("squeue", "-h", "--states=all", f"--jobs={','.join(ids)}", f"--Format={SQUEUE_FIELDS}")
    )
    wanted = set(ids)
    if result.returncode != 0 and "invalid job id" in result.stderr.lower():
        found: dict[str, JobStatus] = {}  # squeue fails only when a lone id is unknown
    else:
        found = parse_squeue(result.check().stdout)
    statuses = {i: s for i, s in found.items() if i in wanted and s.array_job_id is None}
    for array_id, tasks in _by_array(found.values(), wanted).items():
        if any(not task.terminal for task in tasks):
            statuses[array_id] = aggregate_array(array_id, tasks)
        # else: every task the controller still shows ended; accounting knows them all

    missing = [i for i in ids if i not in statuses]
    files = {exit_files[i]: i for i in missing if i in exit_files}
    plain = {path: i for path, i in files.items() if not path.endswith(ARRAY_EXIT_SUFFIX)}
    if plain:
        result = yield Command(("grep", "-s", "-H", "", *plain))
        statuses.update(parse_exit_files(result.stdout, plain))
    arrays = {path: i for path, i in files.items() if path.endswith(ARRAY_EXIT_SUFFIX)}
    if arrays:
        pairs = [part for path in arrays for part in _split_array_exit(path)]
        result = yield Command(("sh", "-c", _GREP_ARRAY_EXITS, "sh", *pairs))
        statuses.update(_array_exit_statuses(result.stdout, arrays))
    missing = [i for i in ids if i not in statuses]

    if missing and accounting.enabled is not False:
        result = yield Command(
            (
                "sacct",
                "-X",
                "-n",
                "-P",
                f"--jobs={','.join(missing)}",
                f"--format={SACCT_FIELDS}",
                f"--starttime={SACCT_SINCE}",
            )
        )
        if accounting.note(result):
            asked = set(missing)
            rows = parse_sacct(result.check().stdout)
            for array_id, tasks in _by_array(rows.values(), asked).items():
                rows[array_id] = aggregate_array(array_id, tasks)
            for job_id, status in rows.items():
                if job_id not in asked:
                    continue
                if not status.terminal:
                    status = unknown_status(
                        job_id,
                        f"sacct says {status.state} but the controller no longer knows the job "
                        "(accounting lag, or lost in a controller restart)",
                        source="sacct",
                    )
                statuses[job_id] = status
    for job_id in ids:
        if job_id not in statuses:
            statuses[job_id] = unknown_status(job_id, "no SLURM source knows this job")
    return statuses


def _by_array(rows: Iterable[JobStatus], wanted: set[str]) -> dict[str, list[JobStatus]]:
    """The tasks of each wanted job array, by array job id."""
    tasks: dict[str, list[JobStatus]] = {}
    for row in rows:
        if row.array_job_id is not None and row.array_job_id in wanted:
            tasks.setdefault(row.array_job_id, []).append(row)
    return tasks


def _array_exit_statuses(stdout: str, arrays: Mapping[str, str]) -> dict[str, JobStatus]:
    """Array statuses from their tasks' exit files (`<name>-<id>_<task>.exit:<code>` lines)."""
    prefixes = {_split_array_exit(path)[1] + "_": job_id for path, job_id in arrays.items()}
    tasks: dict[str, list[JobStatus]] = {}
    for line in stdout.splitlines():
        file_name = line.partition(":")[0]
        for prefix, job_id in prefixes.items():
            if file_name.startswith(prefix):
                parsed = parse_exit_files(line, {file_name: job_id})
                tasks.setdefault(job_id, []).extend(parsed.values())
    return {job_id: aggregate_array(job_id, found) for job_id, found in tasks.items()}


def cancel_steps(job_ids: Iterable[str]) -> Steps[None]:
    ids = list(dict.fromkeys(str(i) for i in job_ids))
    if not ids:
        return None
    result = yield Command(("scancel", *ids))
    benign = ("invalid job id", "already completing or completed", "job has already finished")
    if result.returncode != 0 and not any(b in result.stderr.lower() for b in benign):
        result.check()
    return None


def queued_steps(prefix: str) -> Steps[list[QueuedJob]]:
    """Our queued jobs whose name starts with `prefix` (`jf-<run key>.`: one run's batches).
    ONE squeue of the user's jobs, filtered here: squeue's --name wants whole names."""
    result = yield Command(("squeue", "-h", "--me", "-o", "%i|%j|%T"))
    jobs = []
    for line in result.check().stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        name, _, state = rest.rpartition("|")
        if job_id and name.startswith(prefix):
            jobs.append(QueuedJob(job_id, name, state))
    return jobs


def job_nodes_steps(
    job_id: str, accounting: Accounting, states: Collection[str] | None = None
) -> Steps[list[str]]:
    """The nodes a job was given, or an array's tasks were: squeue while the controller still
    holds the job, else sacct; with `states`, only the nodes of tasks that ended in one of
    them (an array's NODE_FAIL tasks, not the ones that merely ran); [] when there are none."""
    result = yield Command(("squeue", "-h", "--states=all", f"--jobs={job_id}", "-o", "%N|%T"))
    lines = result.stdout.splitlines() if result.returncode == 0 else []
    if not any(line.strip() for line in lines) and accounting.enabled is not False:
        result = yield Command(
            ("sacct", "-X", "-n", "-P", f"--jobs={job_id}", "--format=NodeList,State")
        )
        lines = result.check().stdout.splitlines() if accounting.note(result) else []
    names: list[str] = []
    for line in lines:
        nodes, _, state = line.strip().partition("|")
        if not nodes or nodes == "None assigned":
            continue
        if states is None or (state.split() or [""])[0] in states:
            names.extend(expand_hostlist(nodes))
    return list(dict.fromkeys(names))


def partition_nodes_steps(partition: str | None) -> Steps[list[str]]:
    """The nodes of a partition (the default partition when None): ONE sinfo."""
    result = yield Command(("sinfo", "-h", "-N", "-o", "%N|%P"))
    names = []
    for line in result.check().stdout.splitlines():
        node, _, part = line.strip().partition("|")
        default = part.endswith("*")
        if node and (part.rstrip("*") == partition if partition else default):
            names.append(node)
    return list(dict.fromkeys(names))


def tail_steps(path: str, lines: int) -> Steps[str]:
    result = yield Command(("tail", "-n", str(int(lines)), "--", path))
    return result.stdout if result.returncode == 0 else ""


TAIL_MAX_BYTES = 4096
_SEPARATOR = "\x1e"
# The last lines of many files in one command: each behind a record separator and its path.
_TAILS = (
    'n=$1; shift; for f; do printf "\\036%s\\n" "$f"; '
    'tail -n "$n" -- "$f" 2>/dev/null | tail -c ' + str(TAIL_MAX_BYTES) + "; done; exit 0"
)


def tails_steps(paths: Iterable[str], lines: int) -> Steps[dict[str, str]]:
    """The last `lines` lines (at most TAIL_MAX_BYTES) of each file; "" for a missing one.
    One round trip for a batch's logs: the trigger gathers them with its open connection."""
    wanted = list(dict.fromkeys(paths))
    if not wanted:
        return {}
    result = yield Command(("sh", "-c", _TAILS, "sh", str(int(lines)), *wanted))
    return parse_tails(result.stdout, wanted)


def parse_tails(stdout: str, paths: list[str]) -> dict[str, str]:
    found = dict.fromkeys(paths, "")
    for chunk in stdout.split(_SEPARATOR)[1:]:
        path, _, text = chunk.partition("\n")
        if path in found:
            found[path] = text
    return found


# The output dir is on the cluster: result files are read where they are, through the
# transport. The directory is an argument of a fixed script, never part of it.
_CAT_RESULTS = 'cat -- "$1"/results/*.jsonl 2>/dev/null; exit 0'
# One batch's own records: its runner's file (an array's: one per task, `<batch>.<task>`),
# those of its jobs other batches ran (`<batch>.by-<runner>`, rundir.claims) and the records
# the Airflow side completed.
_CAT_BATCH = (
    'cd -- "$1/results" 2>/dev/null || exit 0; '
    'cat -- "$2.jsonl" "$2".[0-9]*.jsonl "$2".by-*.jsonl "$2.completed.jsonl" 2>/dev/null; '
    "exit 0"
)
# Who claimed which chunk of a batch (rundir.claims): `<chunk> <by.json>` per line.
_LIST_CLAIMS = (
    'for c in [0-9]*; do [ -d "$c" ] || continue; '
    'printf "%s %s\\n" "$c" "$(cat -- "$c/by.json" 2>/dev/null)"; done; exit 0'
)
_CAT_CLAIMS = 'cd -- "$1/claims/$2" 2>/dev/null || exit 0; ' + _LIST_CLAIMS
# Claims the chunks named after the claim's JSON (an mkdir each, as a runner's), then lists.
_CLAIM_CHUNKS = (
    'd="$1/claims/$2"; by=$3; shift 3; mkdir -p -- "$d" && cd -- "$d" || exit 1; '
    'for c in "$@"; do mkdir -- "$c" 2>/dev/null || continue; '
    'printf "%s" "$by" > "$c/.by.json.$$" && mv -f -- "$c/.by.json.$$" "$c/by.json"; done; '
) + _LIST_CLAIMS


def read_results_steps(output_dir: str, batch: str | None = None) -> Steps[dict[str, ResultRecord]]:
    """The latest record of every job of a run dir; with `batch`, of that batch's files only
    (what its wait needs, without reading a 100,000-job run's records per batch)."""
    if batch is None:
        command = ("sh", "-c", _CAT_RESULTS, "sh", output_dir)
    else:
        command = ("sh", "-c", _CAT_BATCH, "sh", output_dir, check_tag(batch))
    result = yield Command(command)
    return latest_records(parse_record_lines(result.check().stdout.splitlines()))


def read_claims_steps(output_dir: str, batch: str) -> Steps[dict[int, Claim | None]]:
    result = yield Command(("sh", "-c", _CAT_CLAIMS, "sh", output_dir, check_tag(batch)))
    return parse_claim_lines(result.check().stdout.splitlines())


def claim_chunks_steps(
    output_dir: str, batch: str, chunks: Iterable[int], claim: Claim
) -> Steps[dict[int, Claim | None]]:
    names = [chunk_name(c) for c in chunks]
    script = ("sh", "-c", _CLAIM_CHUNKS, "sh", output_dir, check_tag(batch), claim_json(claim))
    result = yield Command((*script, *names))
    return parse_claim_lines(result.check().stdout.splitlines())


# Writes too: the path is an argument, the data comes on stdin.
_APPEND = 'mkdir -p -- "$(dirname -- "$1")" && cat >> "$1"'
_WRITE = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1.tmp.$$" && mv -f -- "$1.tmp.$$" "$1"'


def append_steps(path: str, text: str) -> Steps[None]:
    """Append to a file on the cluster (events, records the Airflow side completes). A retry
    after a lost connection may append twice: readers take duplicates in their stride."""
    (yield Command(("sh", "-c", _APPEND, "sh", path), input=text)).check()
    return None


def write_steps(path: str, text: str) -> Steps[None]:
    """Replace a file on the cluster atomically (manifest, report)."""
    (yield Command(("sh", "-c", _WRITE, "sh", path), input=text)).check()
    return None


USAGE_CHUNK = 500  # job ids per sacct call: a bounded argv for runs of thousands of batches


def usage_steps(job_ids: Iterable[str], accounting: Accounting) -> Steps[dict[str, BatchUsage]]:
    """What each job used (slurm.usage), from sacct; {} where accounting is off.

    No --starttime: with --jobs sacct then searches all time, and a run's stats are asked
    for long after it ended."""
    ids = list(dict.fromkeys(str(i) for i in job_ids))
    usage: dict[str, BatchUsage] = {}
    for first in range(0, len(ids), USAGE_CHUNK):
        if accounting.enabled is False:
            break
        chunk = ids[first : first + USAGE_CHUNK]
        result = yield Command(
            (
                "sacct",
                "-n",
                "-P",
                "--noconvert",
                f"--jobs={','.join(chunk)}",
                f"--format={USAGE_FIELDS}",
            )
        )
        if accounting.note(result):
            found = parse_sacct_usage(result.check().stdout)
            usage.update((i, found[i]) for i in chunk if i in found)
    return usage


# --- grace for jobs nobody knows ---------------------------------------------------------------
GRACE_S = 120.0


@dataclass
class StatusTracker:
    """Decides a job that stays UNKNOWN for longer than `grace_s`; never lets it count as
    success.

    The grace covers the gap between sbatch and the controller listing a job, and sacct lag.
    After it, a job that wrote no exit file and that the controller no longer knows was lost
    by the controller (a slurmctld killed before it saved its state purges the jobs it had
    just accepted on restart, before accounting may have seen them): RETRYABLE, so the wait
    task resubmits the batch, at most `max_resubmits` times. Seen in the deployment's
    slurmctld kill test: the purged job was known to no source at all.
    """

    grace_s: float = GRACE_S
    clock: Callable[[], float] = time.monotonic
    _first_unknown: dict[str, float] = field(default_factory=dict)

    def resolve(self, statuses: Mapping[str, JobStatus]) -> dict[str, JobStatus]:
        now = self.clock()
        out = {}
        for job_id, status in statuses.items():
            if status.outcome is not Outcome.UNKNOWN:
                self._first_unknown.pop(job_id, None)
                out[job_id] = status
                continue
            first = self._first_unknown.setdefault(job_id, now)
            if now - first >= self.grace_s:
                status = JobStatus(
                    job_id=job_id,
                    state="LOST",
                    outcome=Outcome.RETRYABLE,
                    reason=f"SLURM job {job_id} unknown for {now - first:.0f}s: {status.reason}",
                    source="tracker",
                )
            out[job_id] = status
        return out


# --- drivers -----------------------------------------------------------------------------------
class _Restart(Exception):
    """A non-idempotent command failed transiently: rerun the whole operation."""


@dataclass
class RetryPolicy:
    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2**attempt)


class SlurmClient:
    """Synchronous client over a `Transport` (operators, hooks, CLI)."""

    supports_arrays = True

    def __init__(
        self,
        transport: Transport,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.transport = transport
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.accounting = Accounting()

    def _run(self, command: Command) -> CommandResult:
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                result = self.transport.run(command.argv, input=command.input)
            except TransportError:
                if not command.idempotent:
                    raise _Restart from None
                if last:
                    raise
                self.sleep(self.retry.delay(attempt))
                continue
            if not is_transient(result) or last:
                return result
            if not command.idempotent:
                raise _Restart
            self.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    def _drive(self, make: Callable[[], Steps[T]]) -> T:
        for attempt in range(self.retry.attempts):
            steps = make()
            try:
                command = next(steps)
                while True:
                    command = steps.send(self._run(command))
            except StopIteration as stop:
                return stop.value
            except _Restart:
                if attempt == self.retry.attempts - 1:
                    raise SlurmError("giving up after repeated transient SLURM errors") from None
                self.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    def submit(self, request: SubmitRequest, *, adopt: bool = True) -> SubmittedJob:
        return self._drive(lambda: submit_steps(request, self.accounting, adopt))

    def find(self, tag: str, *, deep: bool = True) -> str | None:
        return self._drive(lambda: find_steps(tag, self.accounting, deep))

    def status(
        self, job_ids: Iterable[str], exit_files: Mapping[str, str] | None = None
    ) -> dict[str, JobStatus]:
        ids = list(job_ids)
        return self._drive(lambda: status_steps(ids, exit_files or {}, self.accounting))

    def cancel(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        self._drive(lambda: cancel_steps(ids))

    def tail_logs(self, path: str, lines: int = 50) -> str:
        return self._drive(lambda: tail_steps(path, lines))

    def tails(self, paths: Iterable[str], lines: int = 30) -> dict[str, str]:
        wanted = list(paths)
        return self._drive(lambda: tails_steps(wanted, lines))

    def queued(self, prefix: str) -> list[QueuedJob]:
        return self._drive(lambda: queued_steps(prefix))

    def job_nodes(self, job_id: str, states: Collection[str] | None = None) -> list[str]:
        return self._drive(lambda: job_nodes_steps(job_id, self.accounting, states))

    def partition_nodes(self, partition: str | None) -> list[str]:
        return self._drive(lambda: partition_nodes_steps(partition))

    def read_results(self, output_dir: str, batch: str | None = None) -> dict[str, ResultRecord]:
        return self._drive(lambda: read_results_steps(output_dir, batch))

    def read_claims(self, output_dir: str, batch: str) -> dict[int, Claim | None]:
        return self._drive(lambda: read_claims_steps(output_dir, batch))

    def claim_chunks(
        self, output_dir: str, batch: str, chunks: Iterable[int], claim: Claim
    ) -> dict[int, Claim | None]:
        wanted = list(chunks)
        return self._drive(lambda: claim_chunks_steps(output_dir, batch, wanted, claim))

    def append_text(self, path: str, text: str) -> None:
        self._drive(lambda: append_steps(path, text))

    def write_text(self, path: str, text: str) -> None:
        self._drive(lambda: write_steps(path, text))

    def usage(self, job_ids: Iterable[str]) -> dict[str, BatchUsage]:
        ids = list(job_ids)
        return self._drive(lambda: usage_steps(ids, self.accounting))

    def close(self) -> None:
        self.transport.close()


class AsyncSlurmClient:
    """The same operations over an `AsyncTransport` (triggers)."""

    supports_arrays = True

    def __init__(self, transport: AsyncTransport, retry: RetryPolicy | None = None) -> None:
        self.transport = transport
        self.retry = retry or RetryPolicy()
        self.accounting = Accounting()

    async def _run(self, command: Command) -> CommandResult:
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                result = await self.transport.run(command.argv, input=command.input)
            except TransportError:
                if not command.idempotent:
                    raise _Restart from None
                if last:
                    raise
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            if not is_transient(result) or last:
                return result
            if not command.idempotent:
                raise _Restart
            await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    async def _drive(self, make: Callable[[], Steps[T]]) -> T:
        for attempt in range(self.retry.attempts):
            steps = make()
            try:
                command = next(steps)
                while True:
                    command = steps.send(await self._run(command))
            except StopIteration as stop:
                return stop.value
            except _Restart:
                if attempt == self.retry.attempts - 1:
                    raise SlurmError("giving up after repeated transient SLURM errors") from None
                await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    async def submit(self, request: SubmitRequest, *, adopt: bool = True) -> SubmittedJob:
        return await self._drive(lambda: submit_steps(request, self.accounting, adopt))

    async def status(
        self, job_ids: Iterable[str], exit_files: Mapping[str, str] | None = None
    ) -> dict[str, JobStatus]:
        ids = list(job_ids)
        return await self._drive(lambda: status_steps(ids, exit_files or {}, self.accounting))

    async def cancel(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        await self._drive(lambda: cancel_steps(ids))

    async def tail_logs(self, path: str, lines: int = 50) -> str:
        return await self._drive(lambda: tail_steps(path, lines))

    async def tails(self, paths: Iterable[str], lines: int = 30) -> dict[str, str]:
        wanted = list(paths)
        return await self._drive(lambda: tails_steps(wanted, lines))

    async def queued(self, prefix: str) -> list[QueuedJob]:
        return await self._drive(lambda: queued_steps(prefix))

    async def read_results(
        self, output_dir: str, batch: str | None = None
    ) -> dict[str, ResultRecord]:
        return await self._drive(lambda: read_results_steps(output_dir, batch))

    async def read_claims(self, output_dir: str, batch: str) -> dict[int, Claim | None]:
        return await self._drive(lambda: read_claims_steps(output_dir, batch))

    async def claim_chunks(
        self, output_dir: str, batch: str, chunks: Iterable[int], claim: Claim
    ) -> dict[int, Claim | None]:
        wanted = list(chunks)
        return await self._drive(lambda: claim_chunks_steps(output_dir, batch, wanted, claim))

    async def append_text(self, path: str, text: str) -> None:
        await self._drive(lambda: append_steps(path, text))

    async def usage(self, job_ids: Iterable[str]) -> dict[str, BatchUsage]:
        ids = list(job_ids)
        return await self._drive(lambda: usage_steps(ids, self.accounting))

    async def close(self) -> None:
        await self.transport.close()
