"""The `local` backend: batches run on this machine, with the SLURM client's interface.

A batch is the very script sbatch would get, run by bash as a detached process (its own
session), so both backends share one DAG shape, one runner and one exit-code file. Job ids
are `local-<pid>`; the exit-code file is the truth, a live process means running, and a
process gone without an exit file is UNKNOWN (the tracker fails it after its grace).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from airflow_jobforge.results import ResultRecord, collect_results
from airflow_jobforge.slurm.client import SubmittedJob
from airflow_jobforge.slurm.parse import parse_exit_files, unknown_status
from airflow_jobforge.slurm.script import SubmitRequest, check_tag, render
from airflow_jobforge.slurm.states import JobStatus, Outcome

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
    """Adoption by tag goes through a marker file per tag in `state_dir`."""

    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()

    def _marker(self, tag: str) -> Path:
        return self.state_dir / f"{check_tag(tag)}.json"

    def find(self, tag: str, *, deep: bool = True) -> str | None:
        try:
            return json.loads(self._marker(tag).read_text())["job_id"]
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def submit(self, request: SubmitRequest, *, adopt: bool = True) -> SubmittedJob:
        rendered = render(request)
        slurm_dir = Path(rendered.slurm_dir)
        marker = self._marker(request.tag)
        existing = self.find(request.tag) if adopt else None
        if existing is not None:
            return SubmittedJob(existing, rendered.job_name, rendered.slurm_dir, adopted=True)
        slurm_dir.mkdir(parents=True, exist_ok=True)
        # The process' own id is only known once started: name the log files after a
        # placeholder and link them under the final job id.
        tmp_out = slurm_dir / f"{rendered.job_name}-starting.out"
        tmp_err = slurm_dir / f"{rendered.job_name}-starting.err"
        with open(tmp_out, "wb") as out, open(tmp_err, "wb") as err:
            proc = subprocess.Popen(
                [
                    "bash",
                    "-c",
                    'export JOBFORGE_JOB_ID="local-$$"; exec bash -c "$0"',
                    rendered.script,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=request.workdir,
                start_new_session=True,
            )
        job_id = f"{PREFIX}{proc.pid}"
        job = SubmittedJob(job_id, rendered.job_name, rendered.slurm_dir)
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
            path = exit_files.get(job_id)
            if path and os.path.exists(path):
                text = Path(path).read_text()
                statuses.update(parse_exit_files(f"{path}:{text.strip()}", {path: job_id}))
                if job_id in statuses:
                    continue
            pid = _pid(job_id)
            if pid is not None and _alive(pid):
                statuses[job_id] = JobStatus(job_id, "RUNNING", Outcome.RUNNING, source="local")
            else:
                statuses[job_id] = unknown_status(job_id, "local process ended without exit file")
        return statuses

    def cancel(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            pid = _pid(job_id)
            if pid is not None:
                try:
                    os.killpg(pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass

    def tail_logs(self, path: str, lines: int = 50) -> str:
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 64 * 1024))
                text = handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "".join(text.splitlines(keepends=True)[-lines:])

    def read_results(self, output_dir: str) -> dict[str, ResultRecord]:
        return collect_results(output_dir)

    def close(self) -> None:
        pass


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

    async def read_results(self, output_dir: str) -> dict[str, ResultRecord]:
        return self._sync.read_results(output_dir)

    async def close(self) -> None:
        pass
