"""Work sharing between the batches of a group on the real cluster (`batching.work_sharing`):
a sweep through real Airflow (dag.test, backend slurm) runs every job exactly once, part of
them in another batch than planned, and the same sweep without sharing keeps the old shape;
`blocked_by` across batches holds; a batch killed while it runs another batch's jobs loses
nothing and runs nothing twice.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import pytest

from airflow_jobforge.config import SlurmParams
from airflow_jobforge.rundir import collect_results, read_records
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.rundir.claims import read_claims
from airflow_jobforge.slurm.script import SubmitRequest

from .airflow_helpers import run
from .conftest import shared_dir, wait_file, wait_terminal

pytestmark = [pytest.mark.slurm]


def every_record(run_dir: Path) -> list:
    """Every record line of the run, whichever file holds it."""
    return [r for path in sorted((run_dir / "results").glob("*.jsonl")) for r in read_records(path)]


def sweep_config(directory: Path, share: bool, jobs: int = 24) -> Path:
    durations = [round(0.2 + 1.8 * i / (jobs - 1), 2) for i in range(jobs)]
    path = directory / f"sweep-{'shared' if share else 'static'}.json"
    path.write_text(
        json.dumps(
            {
                "jobs": [
                    {
                        "name": f"s{i:02d}",
                        "command": f"sleep {d}; echo done",
                        "estimated_run_minutes": d / 60,
                    }
                    for i, d in enumerate(durations)
                ],
                "submission_groups": [
                    {
                        "name": "sweep",
                        "slurm": {"walltime": "10"},
                        "batching": {
                            "per_node_batch_size": 6,
                            "num_processes": 2,
                            "work_sharing": share,
                        },
                        "max_concurrent_batches": 2,
                        "monitor": {"interval_s": 0},
                    }
                ],
            }
        )
    )
    return path


@pytest.mark.parametrize("share", [True, False], ids=["sharing", "static"])
def test_a_sweep_runs_every_job_once_and_with_sharing_some_in_another_batch(
    cluster, tmp_path, share
):
    out = shared_dir(cluster)

    state, summary, run_dir = run(
        str(sweep_config(tmp_path, share)), backend="slurm", output=str(out), poll_interval=1
    )

    assert state == "success", summary
    assert str(summary) == "24 jobs: 24 successful, 0 failed, 0 canceled, 0 missing"
    records = every_record(run_dir)
    counts = Counter(r.name for r in records)
    assert len(counts) == 24 and set(counts.values()) == {1}, "each job exactly once"
    for name in counts:  # and it ran: its output is there
        assert (run_dir / "job-output" / f"{name}.out").read_text() == "done\n"
    elsewhere = [r for r in records if r.ran_in]
    if share:
        assert elsewhere, "the first batches take the later batches' jobs"
        assert all(r.ran_in != r.batch for r in elsewhere)
    else:
        assert elsewhere == [] and not (run_dir / "claims").exists()


def test_blocked_by_across_batches_holds_with_sharing(cluster, tmp_path):
    out = shared_dir(cluster)
    jobs = [{"name": f"a{i}", "command": "sleep 0.5"} for i in range(4)]
    jobs += [
        {
            "name": "after",
            "command": 'test -e "$JOBFORGE_OUTPUT_DIR/job-output/a3.out"',
            "blocked_by": ["a3"],
        },
        {"name": "free", "command": "true"},
    ]
    config = tmp_path / "blocked.json"
    config.write_text(
        json.dumps(
            {
                "jobs": jobs,
                "submission_groups": [
                    {
                        "name": "b",
                        "slurm": {"walltime": "5"},
                        "batching": {
                            "per_node_batch_size": 4,
                            "num_processes": 2,
                            "work_sharing": True,
                            "try_add_blocked_jobs": False,
                        },
                    }
                ],
            }
        )
    )

    state, summary, run_dir = run(str(config), backend="slurm", output=str(out))

    assert state == "success", summary
    records = collect_results(run_dir)
    assert records["after"].start >= records["a3"].end
    assert records["after"].ran_in is None, "a blocked job stays in its batch"
    assert Counter(r.name for r in every_record(run_dir)).most_common(1)[0][1] == 1


def test_a_batch_killed_while_running_another_batchs_jobs_loses_nothing(cluster, local):
    out = shared_dir(cluster)
    owner = BatchSpec(
        "k-0001",
        tuple(JobSpec(f"long{i}", "sleep 8") for i in range(3)),
        num_processes=1,
        group="k",
        share=True,
        claim_chunk=1,
    )
    thief = BatchSpec(
        "k-0000",
        (JobSpec("mine", "touch $JOBFORGE_OUTPUT_DIR/started"),),
        num_processes=1,
        group="k",
        share=True,
        claim_chunk=1,
    )

    def submit(spec: BatchSpec, hold: bool = False):
        extra = ("--hold",) if hold else ()
        request = SubmitRequest(
            tag=f"it-share-{uuid.uuid4().hex[:10]}",
            batch=spec,
            slurm=SlurmParams(walltime="5", extra=extra),
            output_dir=str(out),
            python=local.python,
        )
        return local.client.submit(request)

    pending = submit(owner, hold=True)  # its file is written at submit: takeable while held
    job = submit(thief)
    wait_file(out / "started")
    wait_file(out / "claims" / "k-0001" / "000002" / "by.json")
    subprocess.run(["scancel", job.job_id], check=True)
    wait_terminal(local.client, job, timeout=60)
    subprocess.run(["scontrol", "release", pending.job_id], check=True)
    wait_terminal(local.client, pending, timeout=120)

    records = every_record(out)
    counts = Counter(r.name for r in records)
    assert set(counts) == {"mine", "long0", "long1", "long2"}
    assert set(counts.values()) == {1}, f"one record per job: {counts}"
    by_name = {r.name: r for r in records}
    assert by_name["long2"].status == "missing" and by_name["long2"].ran_in == "k-0000"
    assert by_name["long2"].batch == "k-0001"
    claims = read_claims(out, "k-0001")
    assert claims[2] is not None and claims[2].batch == "k-0000"
    ran_by_owner = [r for r in records if r.batch == "k-0001" and r.ran_in is None]
    assert {r.name for r in ran_by_owner} == {"long0", "long1"}
    assert all(r.succeeded for r in ran_by_owner)
