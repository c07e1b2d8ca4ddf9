"""One-job batches as SLURM job arrays: planning, the sbatch script, and an array's status
from squeue/sacct outputs recorded on the real cluster (tests/fixtures/slurm/record.sh)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from airflow_jobforge.config import SlurmParams, parse_configuration
from airflow_jobforge.dag.render import render_config
from airflow_jobforge.planning.planner import ARRAY_MAX, merge_arrays, plan_batches
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec, array_task
from airflow_jobforge.slurm.client import SlurmClient, SubmittedJob
from airflow_jobforge.slurm.script import SubmitRequest, sbatch_job
from airflow_jobforge.slurm.states import Outcome
from tests.unit.test_slurm_client import Replay, rec

ARRAY, PLAIN = rec("array_ids.txt").split()


def one_job_config(n: int, **batching: object) -> object:
    """`prep`, then n one-job batches: the odd ones wait for prep, the even ones do not."""
    jobs = [{"name": "prep", "command": "true", "submission_group": "first"}]
    jobs += [
        {
            "name": f"sim{i}",
            "command": "true",
            "submission_group": "g",
            "blocked_by": ["prep"] if i % 2 else [],
        }
        for i in range(n)
    ]
    return parse_configuration(
        {
            "jobs": jobs,
            "submission_groups": [
                {"name": "first", "batching": {"per_node_batch_size": 10}},
                {"name": "g", "batching": {"per_node_batch_size": 1, **batching}},
            ],
        }
    )


def test_one_job_batches_with_the_same_dependencies_become_arrays_of_at_most_1000():
    config = one_job_config(2 * ARRAY_MAX + 2)
    plan = merge_arrays(plan_batches(config), config)
    arrays = [b for b in plan.batches if b.array]
    assert sorted(len(b.jobs) for b in arrays) == [1, 1, 1000, 1000]
    free = [b for b in arrays if not b.depends_on]
    waiting = [b for b in arrays if b.depends_on]
    assert sum(len(b.jobs) for b in free) == ARRAY_MAX + 1
    assert all(b.depends_on == ("first-0000",) for b in waiting), "each waits for prep's batch"
    assert len(plan.batches) == 1 + 4
    assert plan.batch_of["sim3"] in {b.name for b in waiting}


def test_a_lone_one_job_batch_stays_a_batch_and_groups_may_opt_out():
    config = one_job_config(1)
    assert not any(b.array for b in merge_arrays(plan_batches(config), config).batches)
    config = one_job_config(50, job_arrays=False)
    plan = merge_arrays(plan_batches(config), config)
    assert not any(b.array for b in plan.batches) and len(plan.batches) == 51


def test_batches_that_waited_for_a_merged_batch_wait_for_its_array():
    config = parse_configuration(
        {
            "jobs": [
                {"name": "a", "command": "true", "submission_group": "one"},
                {"name": "b", "command": "true", "submission_group": "one"},
                {"name": "c", "command": "true", "submission_group": "many", "blocked_by": ["b"]},
            ],
            "submission_groups": [
                {"name": "one", "batching": {"per_node_batch_size": 1}},
                {"name": "many", "batching": {"per_node_batch_size": 10}},
            ],
        }
    )
    render = render_config(config)
    names = [b.name for b in render.batches]
    assert names == ["one-array0000", "many-0000"]
    assert render.batches[1].depends_on == ("one-array0000",)
    assert render.batches[0].array and render.batches[0].jobs == ("a", "b")
    assert render.batches[0].job_docs is not None, "small configs keep a task per job"


def test_the_array_throttle_is_the_groups_max_concurrent_batches():
    render = render_config(one_job_config(4), job_tasks=False)
    config = parse_configuration(
        {
            "jobs": [{"name": f"j{i}", "command": "true"} for i in range(5)],
            "submission_groups": [
                {
                    "name": "g",
                    "batching": {"per_node_batch_size": 1},
                    "max_concurrent_batches": 2,
                }
            ],
        }
    )
    assert render.batches[-1].array_throttle is None
    (array,) = render_config(config).batches
    assert array.array and array.array_throttle == 2


def request(n: int, out: str = "/scratch/run", throttle: int | None = None) -> SubmitRequest:
    spec = BatchSpec(
        batch="g-array0000",
        jobs=tuple(JobSpec(f"j{i}", f"echo job {i} > {out}/said-{i}") for i in range(n)),
    )
    return SubmitRequest(
        tag="abc.g-array0000.t1",
        batch=spec,
        slurm=SlurmParams(),
        output_dir=out,
        array=True,
        array_throttle=throttle,
    )


def test_an_array_is_one_sbatch_with_a_task_per_job_and_per_task_files():
    prepared = sbatch_job(request(3, throttle=2))
    assert "--array=0-2%2" in prepared.argv
    assert "--output=/scratch/run/slurm/jf-abc.g-array0000.t1-%A_%a.out" in prepared.argv
    job = SubmittedJob("77", prepared.job_name, prepared.slurm_dir, array=True)
    assert job.exit_file.endswith("jf-abc.g-array0000.t1-77_*.exit")
    assert job.stdout_path.endswith("-77_0.out")


def test_an_array_task_runs_only_its_own_job_and_writes_its_own_records(tmp_path: Path):
    """The prepared script, run by bash as SLURM would run task 1 of array 77."""
    prepared = sbatch_job(request(3, out=str(tmp_path)))
    env = {
        **os.environ,
        "SLURM_JOB_ID": "79",
        "SLURM_ARRAY_JOB_ID": "77",
        "SLURM_ARRAY_TASK_ID": "1",
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    env["PATH"] = f"{Path(os.sys.executable).parent}:{env['PATH']}"
    done = subprocess.run(
        ["bash", "-s"], input=prepared.script, env=env, text=True, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("said-*")) == ["said-1"]
    records = (tmp_path / "results" / "g-array0000.1.jsonl").read_text().splitlines()
    assert [json.loads(r)["name"] for r in records] == ["j1"]
    assert (tmp_path / "slurm" / f"{prepared.job_name}-77_1.exit").read_text() == "0\n"


def test_without_an_array_task_id_the_script_runs_every_job(tmp_path: Path):
    """The local backend (no SLURM) runs an array's script once: all its jobs."""
    prepared = sbatch_job(request(3, out=str(tmp_path)))
    env = {**os.environ, "JOBFORGE_JOB_ID": "local-1"}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    env["PATH"] = f"{Path(os.sys.executable).parent}:{env['PATH']}"
    done = subprocess.run(
        ["bash", "-s"], input=prepared.script, env=env, text=True, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("said-*"))) == 3


def test_array_task_spec_is_one_job_under_a_dotted_name():
    spec = request(3).batch
    task = array_task(spec, 2)
    assert task.batch == "g-array0000.2" and [j.name for j in task.jobs] == ["j2"]
    with pytest.raises(ValueError, match="outside"):
        array_task(spec, 3)


def test_a_running_array_is_running_and_a_plain_job_beside_it_keeps_its_own_state():
    replay = Replay({"squeue": [(0, rec("squeue_array_running.txt"), "")]})
    statuses = SlurmClient(replay).status([ARRAY, PLAIN])
    assert statuses[ARRAY].outcome is Outcome.RUNNING and statuses[ARRAY].state == "RUNNING"
    assert "1 PENDING" in statuses[ARRAY].reason and "2 RUNNING" in statuses[ARRAY].reason
    assert statuses[PLAIN].state == "PENDING"
    assert replay.programs() == ["squeue"], "one query for every job and task"


def test_an_ended_array_is_judged_from_accounting_by_its_most_demanding_task():
    replay = Replay(
        {
            "squeue": [(0, rec("squeue_array_done.txt"), "")],
            "sacct": [(0, rec("sacct_array_done.txt"), "")],
        }
    )
    statuses = SlurmClient(replay).status([ARRAY, PLAIN])
    array = statuses[ARRAY]
    assert array.outcome is Outcome.FAILED and array.exit_code == 1, "task 1's job failed"
    assert array.reason.startswith("array tasks: 3 COMPLETED, 1 FAILED")
    assert statuses[PLAIN].outcome is Outcome.SUCCEEDED
    assert replay.programs() == ["squeue", "sacct"]
    assert f"--jobs={ARRAY}" in replay.calls[1]


def test_without_accounting_an_array_is_judged_from_its_tasks_exit_files():
    job = SubmittedJob(ARRAY, "jf-t", "/run/slurm", array=True)
    grep = f"jf-t-{ARRAY}_0.exit:0\njf-t-{ARRAY}_1.exit:1\njf-t-{ARRAY}_2.exit:0\n"
    replay = Replay({"squeue": [(1, "", "slurm_load_jobs error: Invalid job id specified\n")]})
    replay.answers["sh"] = [(0, grep, "")]
    replay.answers["sacct"] = []
    client = SlurmClient(replay)
    client.accounting.enabled = False
    status = client.status([ARRAY], {ARRAY: job.exit_file})[ARRAY]
    assert status.outcome is Outcome.FAILED and status.exit_code == 1
    assert replay.calls[1][-2:] == ("/run/slurm", f"jf-t-{ARRAY}")


def test_find_by_tag_answers_the_array_job_id_not_a_tasks_own_id():
    replay = Replay({"squeue": [(0, rec("squeue_array_done.txt"), "")]})
    assert SlurmClient(replay).find("t") in {ARRAY, PLAIN}
    rows = [line for line in rec("squeue_array_done.txt").splitlines() if f"|{ARRAY}|" in line]
    replay = Replay({"squeue": [(0, "\n".join(rows), "")]})
    assert SlurmClient(replay).find("t") == ARRAY
