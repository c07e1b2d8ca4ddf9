"""Submission limits on the real cluster through real Airflow (dag.test): a group's
`max_concurrent_batches` bounds its batches in the SLURM queue, and a cluster's
`submit_rate_limit` spaces its sbatch calls. SLURM's accounting is the witness."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from airflow_jobforge.rundir import collect_results

from .airflow_helpers import run

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def write_config(directory: Path, name: str, command: str, limit: int | None) -> Path:
    """6 batches of 2 jobs (batches of one job would become a job array), each running its
    own: with work sharing the first batches would run the others' jobs, and the records
    would not name every SLURM job the limits let through."""
    group: dict = {
        "name": "lim",
        "slurm": {"walltime": "5"},
        "batching": {"per_node_batch_size": 2, "num_processes": 2, "work_sharing": False},
    }
    if limit is not None:
        group["max_concurrent_batches"] = limit
    config = {
        "jobs": [
            {"name": f"j{i}", "command": command, "submission_group": "lim"} for i in range(12)
        ],
        "submission_groups": [group],
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def accounting(run_dir: Path) -> list[dict[str, str]]:
    """sacct's Submit/Start/End of the run's SLURM jobs (those its records name)."""
    ids = sorted({r.hpc_job_id for r in collect_results(run_dir).values() if r.hpc_job_id})
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", "JobID,JobName,Submit,End,State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        job_id, name, submit, end, state = line.split("|")
        rows.append({"id": job_id, "name": name, "submit": submit, "end": end, "state": state})
    return rows


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def most_in_queue(rows: list[dict[str, str]]) -> int:
    """The most jobs in the queue at once: a job is there from its Submit to its End. At the
    same second an end counts first (a slot is taken only after one was seen free)."""
    changes = sorted(
        [(seconds(r["submit"]), 1) for r in rows] + [(seconds(r["end"]), -1) for r in rows]
    )
    most = current = 0
    for _, change in changes:
        current += change
        most = max(most, current)
    return most


def output_dir(cluster) -> Path:
    out = Path(
        subprocess.check_output(["mktemp", "-d", "-p", str(cluster.shared)], text=True).strip()
    )
    out.chmod(0o1777)
    return out


def test_a_group_never_has_more_batches_in_the_queue_than_its_limit(
    cluster, tmp_path, monkeypatch
):
    monkeypatch.setenv("JOBFORGE_LIMITS_DIR", str(tmp_path / "limits"))
    config = write_config(tmp_path, "limited", "sleep 4", limit=2)

    state, summary, run_dir = run(str(config), backend="slurm", output=str(output_dir(cluster)))

    assert state == "success", summary
    assert str(summary) == "12 jobs: 12 successful, 0 failed, 0 canceled, 0 missing"
    rows = accounting(run_dir)
    assert len(rows) == 6 and {r["state"] for r in rows} == {"COMPLETED"}
    assert most_in_queue(rows) == 2


def test_sbatch_calls_on_a_cluster_keep_to_its_rate(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("JOBFORGE_LIMITS_DIR", str(tmp_path / "limits"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_JF_IT_RATE",
        json.dumps({"conn_type": "slurm", "extra": {"submit_rate_limit": 0.5}}),
    )
    config = write_config(tmp_path, "rated", "true", limit=None)

    state, summary, run_dir = run(
        str(config), backend="slurm", slurm_conn_id="jf_it_rate", output=str(output_dir(cluster))
    )

    assert state == "success", summary
    submits = sorted(seconds(r["submit"]) for r in accounting(run_dir))
    assert len(submits) == 6
    # One sbatch per 2 s; sacct's Submit has a resolution of 1 s.
    assert min(b - a for a, b in zip(submits, submits[1:], strict=False)) >= 1
    assert submits[-1] - submits[0] >= 9
