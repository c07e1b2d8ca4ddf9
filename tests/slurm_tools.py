"""Reading the real cluster from tests: controller RPC counts and accounting by job name."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass


def sdiag_counts() -> dict[str, int]:
    """Controller RPC counts per message type (exact, noise-free: what polling costs)."""
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0].startswith(("REQUEST_", "MESSAGE_")):
            for part in parts:
                if part.startswith("count:"):
                    counts[parts[0]] = int(part.split(":", 1)[1])
                    break
    return counts


def sdiag_reset() -> None:
    subprocess.run(["sdiag", "-r"], capture_output=True, check=True)


@dataclass(frozen=True)
class AccountedJob:
    job_id: str
    name: str
    state: str
    partition: str


def sacct_jobs(name_prefix: str, since: str = "now-2hours") -> list[AccountedJob]:
    """Every job (any user) whose name starts with `name_prefix`, from accounting."""
    out = subprocess.run(
        ["sacct", "-a", "-X", "-n", "-P", f"--starttime={since}",
         "--format=JobIDRaw,JobName%200,State,Partition"],
        capture_output=True, text=True, check=True,
    ).stdout
    jobs = []
    for line in out.splitlines():
        job_id, name, state, partition = line.split("|")[:4]
        if name.startswith(name_prefix):
            jobs.append(AccountedJob(job_id, name, state.split()[0], partition))
    return jobs


def cancel_jobs(name_prefix: str = "") -> list[str]:
    """scancel every queued or running job (any user) whose name starts with `name_prefix`:
    what an earlier failed test or session left would hold the test cluster's CPUs."""
    out = subprocess.run(
        ["squeue", "-a", "-h", "-o", "%i|%j"], capture_output=True, text=True, check=True
    ).stdout
    ids = [
        job_id
        for job_id, _, name in (line.partition("|") for line in out.splitlines())
        if name.startswith(name_prefix)
    ]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, check=False)
    return ids
