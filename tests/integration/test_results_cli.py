"""`jobforge cancel`, then `jobforge results show`, on runs whose batches really run: on the
SLURM cluster, and on the local backend."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from airflow_jobforge.cli.main import main
from airflow_jobforge.config import SlurmParams
from airflow_jobforge.local.backend import LocalClient
from airflow_jobforge.rundir import RESULTS_DIR, read_records
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.rundir.events import CANCELED_BY_USER, read_events
from airflow_jobforge.rundir.manifest import RunManifest, write_manifest
from airflow_jobforge.slurm.script import SubmitRequest
from airflow_jobforge.slurm.tags import submit_tag

from .conftest import wait_file


def batch_a(run_dir: Path) -> BatchSpec:
    """Two long jobs running (two at a time) and one waiting for the first."""
    return BatchSpec(
        "g-0000",
        (
            JobSpec("a1", f"touch {run_dir}/a1.started; sleep 300"),
            JobSpec("a2", f"touch {run_dir}/a2.started; sleep 300"),
            JobSpec("a3", "true", blocked_by=("a1",)),
        ),
        num_processes=2,
    )


def all_records(run_dir: Path) -> dict[str, list[str]]:
    """Every record of every job (not only the latest): job -> statuses."""
    seen: dict[str, list[str]] = {}
    for path in sorted((run_dir / RESULTS_DIR).glob("*.jsonl")):
        for record in read_records(path):
            seen.setdefault(record.name, []).append(record.status)
    return seen


def show(run_dir: Path, capsys) -> tuple[int, str]:
    code = main(["results", "show", str(run_dir)])
    return code, capsys.readouterr().out


@pytest.mark.slurm
def test_cancel_stops_every_slurm_job_of_a_run_and_leaves_each_job_one_record(local, capsys):
    run_dir = local.output_dir()
    key = uuid.uuid4().hex[:12]
    pending = BatchSpec("g-0001", (JobSpec("b1", "true"), JobSpec("b2", "true")))
    jobs = [
        local.client.submit(
            SubmitRequest(
                tag=submit_tag(key, spec.batch, 1),
                batch=spec,
                slurm=slurm,
                output_dir=str(run_dir),
                python=sys.executable,
            )
        )
        for spec, slurm in (
            (batch_a(run_dir), SlurmParams(walltime="10")),
            (pending, SlurmParams(walltime="10", extra=("--begin=now+1hour",))),
        )
    ]
    write_manifest(
        run_dir,
        RunManifest(
            jobs={"a1": "g-0000", "a2": "g-0000", "a3": "g-0000", "b1": "g-0001", "b2": "g-0001"}
            | {"c1": "g-0002"},  # a batch never submitted
            run_key=key,
        ),
    )
    wait_file(run_dir / "a1.started", timeout=120)
    wait_file(run_dir / "a2.started", timeout=30)

    assert main(["cancel", str(run_dir), "--backend", "slurm"]) == 0
    out = capsys.readouterr().out
    assert "Canceled 2 SLURM job(s) of the run" in out

    ids = [job.job_id for job in jobs]
    states = subprocess.run(
        ["squeue", "-h", "-o", "%i %T", "--states=all", f"--jobs={','.join(ids)}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert dict(zip(states[::2], states[1::2], strict=True)) == dict.fromkeys(ids, "CANCELLED")
    assert local.client.queued(f"jf-{key}.") == []
    assert all_records(run_dir) == {
        "a1": ["missing"],
        "a2": ["missing"],
        "a3": ["canceled"],
        "b1": ["canceled"],
        "b2": ["canceled"],
        "c1": ["canceled"],
    }
    (event,) = [e for e in read_events(run_dir) if e.type == CANCELED_BY_USER]
    assert sorted(event.data["slurm_job_ids"]) == sorted(ids)

    code, table = show(run_dir, capsys)
    assert code == 1
    assert "6 jobs: 0 successful, 0 failed, 4 canceled, 2 missing" in table
    assert "run canceled by user (jobforge cancel)" in table
    assert "batch terminated by SIGTERM" in table


@pytest.mark.slurm
def test_cancel_of_a_run_with_nothing_queued_records_its_unstarted_jobs_once(local, capsys):
    run_dir = local.output_dir()
    write_manifest(run_dir, RunManifest(jobs={"x": "g-0000"}, run_key=uuid.uuid4().hex[:12]))
    assert main(["cancel", str(run_dir), "--backend", "slurm"]) == 0
    assert "No queued SLURM job" in capsys.readouterr().out
    assert main(["cancel", str(run_dir), "--backend", "slurm"]) == 0
    assert "Every job of the run already has a result record" in capsys.readouterr().out
    assert all_records(run_dir) == {"x": ["canceled"]}


def test_cancel_on_the_local_backend_finds_the_run_by_its_slurm_files(tmp_path, capsys):
    """No manifest: the run key comes from the slurm/ file names, the jobs from the batch
    file the batch script wrote."""
    state = tmp_path / "state"
    run_dir = tmp_path / "run"
    client = LocalClient(state)
    key = uuid.uuid4().hex[:12]
    job = client.submit(
        SubmitRequest(
            tag=submit_tag(key, "g-0000", 1),
            batch=batch_a(run_dir),
            slurm=SlurmParams(),
            output_dir=str(run_dir),
            python=sys.executable,
        )
    )
    wait_file(run_dir / "a1.started")
    wait_file(run_dir / "a2.started")
    assert client.queued(f"jf-{key}.") != []

    argv = ["cancel", str(run_dir), "--backend", "local", "--state-dir", str(state)]
    assert main(argv) == 0
    assert f"Canceled 1 SLURM job(s) of the run: {job.job_id}" in capsys.readouterr().out
    assert client.queued(f"jf-{key}.") == []
    assert all_records(run_dir) == {"a1": ["missing"], "a2": ["missing"], "a3": ["canceled"]}
    code, table = show(run_dir, capsys)
    assert code == 1 and "3 jobs: 0 successful, 0 failed, 1 canceled, 2 missing" in table


def test_the_run_key_comes_from_submit_events_when_nothing_else_names_it(tmp_path, capsys):
    from airflow_jobforge.results.cancel import run_keys
    from airflow_jobforge.rundir.events import BATCH_SUBMITTED, EventLog

    key = uuid.uuid4().hex[:12]
    EventLog(tmp_path, "airflow").emit(
        BATCH_SUBMITTED,
        batch="g-0000",
        data={"jobs": ["j1", "j2"], "tag": submit_tag(key, "g-0000", 1)},
    )
    assert run_keys(tmp_path) == [key]
    state = tmp_path / "state"
    assert main(["cancel", str(tmp_path), "--backend", "local", "--state-dir", str(state)]) == 0
    assert "Recorded 2 job(s) without a result as canceled: j1, j2" in capsys.readouterr().out
    records = [
        json.loads(line) for line in (tmp_path / RESULTS_DIR / "g-0000-canceled.jsonl").open()
    ]
    assert {r["name"]: r["status"] for r in records} == {"j1": "canceled", "j2": "canceled"}
