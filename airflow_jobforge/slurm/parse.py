"""Parsers of sbatch/squeue/sacct output; unit tested with outputs recorded on a real cluster."""

from __future__ import annotations

from airflow_jobforge.errors import SlurmError
from airflow_jobforge.slurm.states import JobStatus, Outcome, classify_state, outcome_of_exit_code

# Field lists the client asks for; parsers below depend on their order.
SQUEUE_FIELDS = "JobID:|,State:|,Reason:|,exit_code"
SACCT_FIELDS = "JobIDRaw,State,ExitCode,Reason"
ACCOUNTING_DISABLED = "accounting storage is disabled"


def parse_sbatch(stdout: str) -> str:
    """`sbatch --parsable` prints 'jobid' or 'jobid;cluster'."""
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = line.split(";", 1)[0]
    if not job_id.isdigit():
        raise SlurmError(f"unexpected sbatch output: {stdout.strip()!r}")
    return job_id


def parse_squeue(stdout: str) -> dict[str, JobStatus]:
    """`squeue -h -O JobID:|,State:|,Reason:|,exit_code`; exit_code is a raw wait status."""
    statuses = {}
    for line in stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 3 or not parts[0]:
            continue
        job_id, state, reason = parts[0], parts[1], parts[2]
        outcome = classify_state(state)
        exit_code = None
        if outcome.terminal and len(parts) > 3 and parts[3].isdigit():
            exit_code = _from_wait_status(int(parts[3]))
        statuses[job_id] = JobStatus(
            job_id=job_id,
            state=state,
            outcome=outcome,
            exit_code=exit_code,
            reason=None if reason in ("None", "(null)", "") else reason,
            source="squeue",
        )
    return statuses


def _from_wait_status(status: int) -> int:
    """A POSIX wait status as a shell would report it: exit code, or 128+signal."""
    signal = status & 0x7F
    return 128 + signal if signal else (status >> 8) & 0xFF


def _exit_code(text: str) -> int | None:
    code, _, signal = text.partition(":")
    if not code.isdigit():
        return None
    if signal.isdigit() and int(signal) and not int(code):
        return 128 + int(signal)
    return int(code)


def parse_sacct(stdout: str) -> dict[str, JobStatus]:
    """sacct -X -n -P: one allocation line per job; a requeued job may show several, the last
    one is current."""
    statuses = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 4 or not parts[0]:
            continue
        job_id, state, exit_text, reason = parts[:4]
        statuses[job_id] = JobStatus(
            job_id=job_id,
            state=state,
            outcome=classify_state(state),
            exit_code=_exit_code(exit_text),
            reason=None if reason in ("None", "") else reason,
            source="sacct",
        )
    return statuses


def parse_exit_files(stdout: str, path_to_id: dict[str, str]) -> dict[str, JobStatus]:
    """`grep -s -H '' FILE...` output: 'path:content' per existing, non-empty file."""
    statuses = {}
    for line in stdout.splitlines():
        path, sep, content = line.rpartition(":")
        job_id = path_to_id.get(path)
        if not sep or job_id is None or not content.strip().lstrip("-").isdigit():
            continue
        code = int(content.strip())
        outcome = outcome_of_exit_code(code)
        statuses[job_id] = JobStatus(
            job_id=job_id,
            state=f"EXITED {code}",
            outcome=outcome,
            exit_code=code,
            source="exit_file",
        )
    return statuses


def unknown_status(job_id: str, reason: str) -> JobStatus:
    return JobStatus(job_id=job_id, state="UNKNOWN", outcome=Outcome.UNKNOWN, reason=reason)
