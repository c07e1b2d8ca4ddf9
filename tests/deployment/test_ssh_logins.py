"""SSH logins per run, counted where a login node's admin would: in sshd's own log.

A run over SSH must cost the login node about one login per submission, not one per task:
real login nodes throttle bursts (sshd MaxStartups) or ban them (fail2ban). Its 50 batches
are 50 sbatch calls; waits, result tasks and the summary ride on the triggerer's poller
connection (records travel in the trigger's event) or log in a constant number of times.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .conftest import read_env
from .runs import records, run_dag, run_dir, slurm_jobs
from .workload import SSH_BATCHES

pytestmark = [pytest.mark.deployment, pytest.mark.slurm]

DAG = "jobforge_deploy_logins_ssh"
ACCEPTED = re.compile(r"Accepted publickey for (\S+) from 127\.0\.0\.1")
CONSTANT = 8  # the summary's manifest, records and usage, the poller's connection, slack


def sshd_log() -> Path:
    state = Path(os.environ.get("JOBFORGE_SLURM_STATE", "/var/lib/jobforge-slurm"))
    return Path(read_env(state / "env")["JOBFORGE_SSH_LOG"])


def logins(log: Path, offset: int) -> list[str]:
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    return [m.group(1) for m in ACCEPTED.finditer(text)]


def test_a_50_batch_run_over_ssh_logs_in_once_per_submission_plus_a_constant(
    deployment, workload
):
    log = sshd_log()
    offset = log.stat().st_size
    run_id, state = run_dag(deployment, DAG, timeout=600)
    count = len(logins(log, offset))
    print(f"SSH logins for a run of {SSH_BATCHES} batches over SSH: {count}")
    assert state == "success"
    done = records(run_dir(DAG, run_id, ssh=True))
    assert len(done) == 2 * SSH_BATCHES and all(r.succeeded for r in done.values())
    assert len(slurm_jobs(DAG, run_id)) == SSH_BATCHES
    # Before: submit, wait and result task each logged in (3 per batch, ~150 here).
    assert count <= SSH_BATCHES + CONSTANT, f"{count} logins for {SSH_BATCHES} submissions"
