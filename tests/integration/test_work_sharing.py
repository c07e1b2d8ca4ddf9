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
from airflow_jobforge.rundir.events import read_events
from airflow_jobforge.slurm.script import SubmitRequest

from .airflow_helpers import backend_options, run
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


@pytest.mark.parametrize(
    ("share", "kind"),
    [(True, "slurm"), (False, "slurm"), (True, "ssh")],
    ids=["sharing", "static", "sharing-ssh"],
)
def test_a_sweep_runs_every_job_once_and_with_sharing_some_in_another_batch(
    cluster, tmp_path, share, kind
):
    """Over SSH the claims are read and made through the client's shell scripts, as the
    SSH user, whose runners write them: the same run dir, another writer."""
    out = shared_dir(cluster)

    state, summary, run_dir = run(
        str(sweep_config(tmp_path, share)),
        output=str(out),
        poll_interval=1,
        **backend_options(kind, cluster),
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


def group_config(path: Path, jobs: list[dict], group: dict) -> Path:
    path.write_text(json.dumps({"jobs": jobs, "submission_groups": [group]}))
    return path


def slurm_jobs(run_dir: Path) -> dict[str, str]:
    """SLURM job id -> state of every job the run submitted (sacct, by the run's job ids in
    its records and events)."""
    ids = {e.hpc_job_id for e in read_events(run_dir) if e.hpc_job_id}
    ids |= {r.hpc_job_id for r in every_record(run_dir) if r.hpc_job_id}
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(sorted(ids))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    states = (line.split("|", 1) for line in out.splitlines() if line.strip())
    return {job_id: state.split()[0] for job_id, state in states}  # 'CANCELLED by 0'


@pytest.mark.slow
def test_a_batch_whose_walltime_is_too_short_stops_in_time_and_is_continued(cluster, tmp_path):
    """Ten 12 s jobs, two at a time, no estimates, a 1-minute walltime: four rounds fit (the
    runner guesses by the longest job it ran), the fifth would end past the walltime less
    the 5 s margin. The wait continues the two jobs left; all ten succeed, nothing times out."""
    out = shared_dir(cluster)
    config = group_config(
        tmp_path / "short-walltime.json",
        [{"name": f"w{i}", "command": "sleep 12; echo done"} for i in range(10)],
        {
            "name": "short",
            "slurm": {"walltime": "1"},
            "batching": {"per_node_batch_size": 10, "num_processes": 2},
            "monitor": {"interval_s": 0},
        },
    )

    state, summary, run_dir = run(str(config), backend="slurm", output=str(out), poll_interval=1)

    assert state == "success", summary
    assert str(summary) == "10 jobs: 10 successful, 0 failed, 0 canceled, 0 missing"
    events = read_events(run_dir)
    (left,) = [e for e in events if e.type == "jobs_left"]
    (continued,) = [e for e in events if e.type == "batch_continued"]
    assert left.data["jobs"] == continued.data["jobs"] and 1 <= len(left.data["jobs"]) <= 4
    records = collect_results(run_dir)
    first, second = left.hpc_job_id, continued.hpc_job_id
    assert {records[n].hpc_job_id for n in continued.data["jobs"]} == {second}
    assert {r.hpc_job_id for n, r in records.items() if n not in left.data["jobs"]} == {first}
    states = slurm_jobs(run_dir)
    assert states == {first: "COMPLETED", second: "COMPLETED"}, "no TIMEOUT, no other job"
    assert Counter(r.name for r in every_record(run_dir)).most_common(1)[0][1] == 1


@pytest.mark.slow
def test_pending_batches_whose_work_ran_elsewhere_are_canceled_and_their_waits_succeed(
    cluster, tmp_path
):
    """Three batches that each want the whole node (--exclusive): one runs, takes the other
    two's jobs while they wait in the queue, and cancels them as surplus; never a running one."""
    out = shared_dir(cluster)
    config = group_config(
        tmp_path / "surplus.json",
        [{"name": f"p{i:02d}", "command": "sleep 2"} for i in range(12)],
        {
            "name": "surplus",
            "slurm": {"walltime": "5", "partition": "debug", "extra": ["--exclusive"]},
            "batching": {"per_node_batch_size": 4, "num_processes": 2},
            "monitor": {"interval_s": 0},
        },
    )

    state, summary, run_dir = run(str(config), backend="slurm", output=str(out), poll_interval=1)

    assert state == "success", summary
    assert str(summary) == "12 jobs: 12 successful, 0 failed, 0 canceled, 0 missing"
    surplus = [e for e in read_events(run_dir) if e.type == "batch_surplus_cancelled"]
    assert len(surplus) == 2
    states = slurm_jobs(run_dir)
    assert sorted(states.values()) == ["CANCELLED", "CANCELLED", "COMPLETED"], states
    assert {e.hpc_job_id for e in surplus} == {i for i, s in states.items() if s == "CANCELLED"}
    records = every_record(run_dir)
    assert len(records) == 12 and len({r.hpc_job_id for r in records}) == 1
