"""The `local` backend: batches run on this machine, with the SLURM client's interface.

A batch is the very script sbatch would get, run by bash as a detached process (its own
session), so both backends share one DAG shape, one runner and one exit-code file. Job ids
are `local-<pid>`; the exit-code file is the truth, a live process means running.

A process gone without an exit file failed, and is reported FAILED at once: unlike SLURM's
accounting there is no lag to wait out here (the process is sampled before the file is
read, so a file written just before the exit is never missed). The reason says what is
known: the exit file the script wrote to the fallback dir (`JOBFORGE_EXIT_FALLBACK_DIR`,
under the state dir) when the output dir could not take it, a full or read-only output dir,
and the tail of the batch's stderr.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from airflow_jobforge.rundir import (
    NOT_WRITABLE,
    RESULTS_DIR,
    ResultRecord,
    collect_results,
    latest_records,
    read_records,
    tail_file,
    unwritable_reason,
)
from airflow_jobforge.rundir.claims import SHARED_MARK, Claim, read_claims, try_claim
from airflow_jobforge.slurm.client import TAIL_MAX_BYTES, QueuedJob, SubmittedJob
from airflow_jobforge.slurm.parse import parse_exit_text
from airflow_jobforge.slurm.script import (
    FALLBACK_ENV,
    JOB_NAME_PREFIX,
    SubmitRequest,
    check_tag,
    fallback_exit_file,
    sbatch_job,
)
from airflow_jobforge.slurm.states import JobStatus, Outcome
from airflow_jobforge.slurm.usage import BatchUsage

PREFIX = "local-"


def _pid(job_id: str) -> int | None:
    rest = job_id.removeprefix(PREFIX)
    return int(rest) if job_id.startswith(PREFIX) and rest.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own finished children
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


def default_state_dir() -> Path:
    return Path(os.environ.get("JOBFORGE_LOCAL_STATE") or f"/tmp/jobforge-local-{os.getuid()}")


class LocalClient:
    """Adoption by tag goes through a marker file per tag in `state_dir`.

    No job arrays: an array batch runs as one process, all its jobs `num_processes` at a
    time (its script runs every job when no array task id is set)."""

    supports_arrays = False

    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()

    def _marker(self, tag: str) -> Path:
        return self.state_dir / f"{check_tag(tag)}.json"

    @property
    def fallback_dir(self) -> Path:
        return self.state_dir / "exit"

    def find(self, tag: str, *, deep: bool = True) -> str | None:
        try:
            return json.loads(self._marker(tag).read_text())["job_id"]
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def submit(self, request: SubmitRequest, *, adopt: bool = True) -> SubmittedJob:
        prepared = sbatch_job(request)
        slurm_dir = Path(prepared.slurm_dir)
        marker = self._marker(request.tag)
        existing = self.find(request.tag) if adopt else None
        if existing is not None:
            return SubmittedJob(existing, prepared.job_name, prepared.slurm_dir, adopted=True)
        slurm_dir.mkdir(parents=True, exist_ok=True)
        if request.batch.share:  # other batches' runners take its jobs while it is pending
            batch_file = Path(prepared.batch_file)
            batch_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = batch_file.with_name(f"{batch_file.name}.tmp.{os.getpid()}")
            tmp.write_text(prepared.batch_json)
            os.replace(tmp, batch_file)
        # The process' own id is only known once started: name the log files after a
        # placeholder and link them under the final job id.
        tmp_out = slurm_dir / f"{prepared.job_name}-starting.out"
        tmp_err = slurm_dir / f"{prepared.job_name}-starting.err"
        with open(tmp_out, "wb") as out, open(tmp_err, "wb") as err:
            proc = subprocess.Popen(
                [
                    "bash",
                    "-c",
                    'export JOBFORGE_JOB_ID="local-$$"; exec bash -c "$0"',
                    prepared.script,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=request.workdir,
                env={**os.environ, FALLBACK_ENV: str(self.fallback_dir)},
                start_new_session=True,
            )
        job_id = f"{PREFIX}{proc.pid}"
        job = SubmittedJob(job_id, prepared.job_name, prepared.slurm_dir)
        os.replace(tmp_out, job.stdout_path)
        os.replace(tmp_err, job.stderr_path)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"job_id": job_id}))
        return job

    def status(
        self, job_ids: Iterable[str], exit_files: Mapping[str, str] | None = None
    ) -> dict[str, JobStatus]:
        exit_files = exit_files or {}
        statuses: dict[str, JobStatus] = {}
        for job_id in dict.fromkeys(job_ids):
            pid = _pid(job_id)
            alive = pid is not None and _alive(pid)  # before the files: see the module doc
            path = exit_files.get(job_id)
            status = self._from_exit_files(job_id, path)
            if status is not None:
                statuses[job_id] = status
            elif alive:
                statuses[job_id] = JobStatus(job_id, "RUNNING", Outcome.RUNNING, source="local")
            else:
                statuses[job_id] = JobStatus(
                    job_id, "EXITED", Outcome.FAILED, reason=ended_without_exit_file(path)
                )
        return statuses

    def _from_exit_files(self, job_id: str, path: str | None) -> JobStatus | None:
        if not path:
            return None
        for candidate in (path, fallback_exit_file(str(self.fallback_dir), path)):
            try:
                text = Path(candidate).read_text()
            except OSError:
                continue
            status = parse_exit_text(job_id, text)
            if status is not None:
                return status
        return None

    def cancel(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            pid = _pid(job_id)
            if pid is not None:
                try:
                    os.killpg(pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass

    def tail_logs(self, path: str, lines: int = 50) -> str:
        return tail_file(path, lines)

    def tails(self, paths: Iterable[str], lines: int = 30) -> dict[str, str]:
        return {p: tail_file(p, lines, max_bytes=TAIL_MAX_BYTES) for p in paths}

    def read_results(self, output_dir: str, batch: str | None = None) -> dict[str, ResultRecord]:
        if batch is None:
            return collect_results(output_dir)
        results = Path(output_dir) / RESULTS_DIR
        paths = [results / f"{batch}.jsonl", results / f"{batch}.completed.jsonl"]
        paths += sorted(results.glob(f"{glob.escape(batch)}{SHARED_MARK}*.jsonl"))
        return latest_records(record for path in paths for record in read_records(path))

    def read_claims(self, output_dir: str, batch: str) -> dict[int, Claim | None]:
        return read_claims(output_dir, batch)

    def claim_chunks(
        self, output_dir: str, batch: str, chunks: Iterable[int], claim: Claim
    ) -> dict[int, Claim | None]:
        for chunk in chunks:
            try_claim(output_dir, batch, chunk, claim)
        return read_claims(output_dir, batch)

    def usage(self, job_ids: Iterable[str]) -> dict[str, BatchUsage]:
        """No accounting here: a local batch's use is what the resource monitor sampled."""
        return {}

    def queued(self, prefix: str) -> list[QueuedJob]:
        """Batches whose job name starts with `prefix` and whose process still lives: the
        marker files map tags to `local-<pid>` ids."""
        jobs = []
        for marker in sorted(self.state_dir.glob("*.json")):
            name = JOB_NAME_PREFIX + marker.stem
            if not name.startswith(prefix):
                continue
            job_id = self.find(marker.stem)
            pid = _pid(job_id) if job_id else None
            if job_id and pid is not None and _alive(pid):
                jobs.append(QueuedJob(job_id, name, "RUNNING"))
        return jobs

    def job_nodes(self, job_id: str, states: Collection[str] | None = None) -> list[str]:
        """A local batch runs on this host, no SLURM node: nothing a resubmission could
        exclude (and NODE_FAIL, which asks, never happens here)."""
        return []

    def partition_nodes(self, partition: str | None) -> list[str]:
        return []

    def append_text(self, path: str, text: str) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def write_text(self, path: str, text: str) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)

    def close(self) -> None:
        pass


def ended_without_exit_file(exit_file: str | None) -> str:
    """Why a local batch left no exit file, as far as its directory and stderr tell."""
    if not exit_file:
        return "local batch process ended; its exit file is unknown"
    reason = f"local batch process ended without writing {exit_file}"
    problem = unwritable_reason(Path(exit_file).parent)
    if problem:
        reason += f": {NOT_WRITABLE} ({problem})"
    stderr = tail_file(exit_file.removesuffix(".exit") + ".err", 5).strip()
    if stderr:
        reason += "; its stderr ends: " + " | ".join(stderr.splitlines())
    return reason


class AsyncLocalClient:
    """Async face of LocalClient: its calls are quick local file/proc reads."""

    def __init__(self) -> None:
        self._sync = LocalClient()

    async def submit(self, request: SubmitRequest, *, adopt: bool = True) -> SubmittedJob:
        return self._sync.submit(request, adopt=adopt)

    async def status(
        self, job_ids: Iterable[str], exit_files: Mapping[str, str] | None = None
    ) -> dict[str, JobStatus]:
        return self._sync.status(job_ids, exit_files)

    async def cancel(self, job_ids: Iterable[str]) -> None:
        self._sync.cancel(job_ids)

    async def tail_logs(self, path: str, lines: int = 50) -> str:
        return self._sync.tail_logs(path, lines)

    async def tails(self, paths: Iterable[str], lines: int = 30) -> dict[str, str]:
        return self._sync.tails(paths, lines)

    async def read_claims(self, output_dir: str, batch: str) -> dict[int, Claim | None]:
        return self._sync.read_claims(output_dir, batch)

    async def claim_chunks(
        self, output_dir: str, batch: str, chunks: Iterable[int], claim: Claim
    ) -> dict[int, Claim | None]:
        return self._sync.claim_chunks(output_dir, batch, chunks, claim)

    async def read_results(
        self, output_dir: str, batch: str | None = None
    ) -> dict[str, ResultRecord]:
        return self._sync.read_results(output_dir, batch)

    async def usage(self, job_ids: Iterable[str]) -> dict[str, BatchUsage]:
        return self._sync.usage(job_ids)

    async def queued(self, prefix: str) -> list[QueuedJob]:
        return self._sync.queued(prefix)

    async def append_text(self, path: str, text: str) -> None:
        self._sync.append_text(path, text)

    async def close(self) -> None:
        pass
