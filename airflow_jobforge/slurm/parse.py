"""Parsers of sbatch/squeue/sacct output; unit tested with outputs recorded on a real cluster."""

from __future__ import annotations

from airflow_jobforge.errors import SlurmError
from airflow_jobforge.rundir import EXIT_OUTPUT_UNWRITABLE, NOT_WRITABLE
from airflow_jobforge.slurm.states import JobStatus, Outcome, classify_state, outcome_of_exit_code

# Field lists the client asks for; parsers below depend on their order.
SQUEUE_FIELDS = "JobID:|,State:|,Reason:|,exit_code:|,ArrayJobID:|,ArrayTaskID:|"
SACCT_FIELDS = "JobIDRaw,State,ExitCode,Reason,JobID"
ACCOUNTING_DISABLED = "accounting storage is disabled"


def parse_sbatch(stdout: str) -> str:
    """`sbatch --parsable` prints 'jobid' or 'jobid;cluster'."""
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = line.split(";", 1)[0]
    if not job_id.isdigit():
        raise SlurmError(f"unexpected sbatch output: {stdout.strip()!r}")
    return job_id


def _array_ids(array_job: str, array_task: str) -> dict[str, str | None]:
    """A task of a job array knows its array; a plain job's ArrayJobID is its own id."""
    if not array_task or array_task == "N/A" or not array_job.isdigit():
        return {}
    return {"array_job_id": array_job, "array_task": array_task}


def parse_squeue(stdout: str) -> dict[str, JobStatus]:
    """`squeue -h -O JobID:|,State:|,Reason:|,exit_code:|,ArrayJobID:|,ArrayTaskID:|`;
    exit_code is a raw wait status. Keyed by the raw job id (an array task's own id)."""
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
            reason=exit_reason(exit_code) or (None if reason in ("None", "(null)", "") else reason),
            source="squeue",
            **_array_ids(*(parts[4:6] if len(parts) > 5 else ("", ""))),
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
        array_job, _, array_task = (parts[4] if len(parts) > 4 else "").partition("_")
        exit_code = _exit_code(exit_text)
        statuses[job_id] = JobStatus(
            job_id=job_id,
            state=state,
            outcome=classify_state(state),
            exit_code=exit_code,
            reason=exit_reason(exit_code) or (None if reason in ("None", "") else reason),
            source="sacct",
            **_array_ids(array_job, array_task),
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
            reason=exit_reason(code),
            source="exit_file",
        )
    return statuses


def exit_reason(code: int | None) -> str | None:
    """What a batch's exit code says beyond success/failure (the node runner's own codes)."""
    if code == EXIT_OUTPUT_UNWRITABLE:
        return f"{NOT_WRITABLE}: the batch could not write its records or batch file"
    return None


def parse_exit_text(job_id: str, text: str) -> JobStatus | None:
    """One exit file: the code on its first line; further lines (a fallback exit file's)
    say why it is not where it belongs."""
    first, _, rest = text.strip().partition("\n")
    if not first.strip().lstrip("-").isdigit():
        return None
    code = int(first)
    reasons = [r for r in (exit_reason(code), " ".join(rest.split())) if r]
    return JobStatus(
        job_id=job_id,
        state=f"EXITED {code}",
        outcome=outcome_of_exit_code(code),
        exit_code=code,
        reason="; ".join(reasons) or None,
        source="exit_file",
    )


def unknown_status(job_id: str, reason: str, source: str = "none") -> JobStatus:
    return JobStatus(
        job_id=job_id, state="UNKNOWN", outcome=Outcome.UNKNOWN, reason=reason, source=source
    )
