"""A pipeline of configs in the real deployment, driven through the REST API: stage 2's config
is generated at run time from stage 1's outputs (a `blocked_by` across its batches), both
stages run on the SLURM cluster, and a DAG scheduled on stage 2's Asset then runs with the
stage's run dir in the triggering event."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from airflow_jobforge.rundir import collect_results
from airflow_jobforge.rundir.pipeline import read_stage_status
from tests.integration.test_pipelines import write_pipeline

from .runs import record_lines, run_dag, run_dir
from .workload import SHARED

pytestmark = [pytest.mark.deployment, pytest.mark.slurm]

PIPELINE_DAG = "jobforge_deploy_twostage"
AFTER_DAG = "jobforge_deploy_after_aggregate"
DAG_FILE = "jobforge_deployment_pipeline.py"
DAG_FILE_TEXT = '''"""Written by tests/deployment/test_stage_pipeline.py: a pipeline DAG and a DAG
scheduled on its `aggregate` stage's Asset."""
import json

from airflow.sdk import DAG, task

from airflow_jobforge.config.pipeline import load_pipeline
from airflow_jobforge.dag import build_pipeline_dag, stage_asset

pipeline_dag = build_pipeline_dag(
    load_pipeline("{pipeline}", check_configs=False)[0],
    "{pipeline_dag}",
    file="{pipeline}",
    backend="slurm",
    output_dir="{output}",
    python="{python}",
    poll_interval=1.0,
    tags=["jobforge", "deployment-test"],
)

with DAG(
    "{after_dag}",
    schedule=[stage_asset("{pipeline_dag}", "aggregate")],
    tags=["jobforge", "deployment-test"],
) as after_dag:

    @task
    def consume(**context):
        events = context["triggering_asset_events"]
        extras = [event.extra for asset_events in events.values() for event in asset_events]
        with open("{marker}", "a") as out:
            out.write(json.dumps(extras) + "\\n")
        return extras

    consume()
'''


def test_a_generated_stage_runs_in_the_deployment_and_its_asset_schedules_a_dag(
    deployment, workload
):
    base = SHARED / "pipeline-test"
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o1777)
    shared = Path(__import__("tempfile").mkdtemp(dir=base))
    shared.chmod(0o1777)
    pipeline = write_pipeline(shared, shared)
    marker = shared / "after-aggregate.jsonl"
    deployment.write_dag(
        DAG_FILE,
        DAG_FILE_TEXT.format(
            pipeline=pipeline,
            pipeline_dag=PIPELINE_DAG,
            after_dag=AFTER_DAG,
            output=shared / "out",
            python=sys.executable,
            marker=marker,
        ),
    )
    try:
        _run_and_check(deployment, pipeline, shared, marker)
    finally:  # a file left behind would point at this run's dir, gone with the next session
        deployment.remove_dag(DAG_FILE)


def _run_and_check(deployment, pipeline: Path, shared: Path, marker: Path) -> None:
    deployment.wait_dag(PIPELINE_DAG, timeout=180)
    deployment.wait_dag(AFTER_DAG, timeout=180)
    deployment.unpause(PIPELINE_DAG)
    deployment.unpause(AFTER_DAG)

    run_id, state = run_dag(deployment, PIPELINE_DAG, timeout=600)
    states = deployment.task_states(PIPELINE_DAG, run_id)
    assert state == "success", states
    assert states["aggregate.plan"] == "success"
    assert states["pipeline_summary"] == "success"
    pipeline_dir = shared / "out" / run_dir(PIPELINE_DAG, run_id).name
    stage2 = collect_results(pipeline_dir / "aggregate")
    assert sorted(stage2) == ["agg_sim1", "agg_sim2", "agg_sim3", "final"]
    assert all(r.succeeded and r.hpc_job_id for r in stage2.values()), "ran under SLURM"
    assert stage2["final"].start >= max(stage2[f"agg_sim{i}"].end for i in (1, 2, 3))
    assert set(record_lines(pipeline_dir / "aggregate").values()) == {1}, "one record per job"
    assert read_stage_status(pipeline_dir / "aggregate").state == "success"

    # The results tab's data (the plugin in the api-server): the stages, then a stage's jobs.
    page = f"/jobforge/dags/{PIPELINE_DAG}/runs/{quote(run_id, safe='')}/data"
    data = deployment.get(page)
    stages = data["pipeline"]["stages"]
    assert [(s["name"], s["state"]) for s in stages] == [
        ("simulate", "success"),
        ("aggregate", "success"),
    ]
    shown = deployment.get(page, params={"stage": "aggregate"})
    assert sorted(job["name"] for job in shown["jobs"]) == sorted(stage2)

    # The Asset event of stage `aggregate` schedules the downstream DAG.
    deadline = time.monotonic() + 180
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(2)
    assert marker.exists(), "the DAG scheduled on the stage's Asset did not run"
    extras = json.loads(marker.read_text().splitlines()[-1])
    assert extras[-1]["run_dir"] == str(pipeline_dir / "aggregate")
    assert extras[-1]["stage"] == "aggregate" and extras[-1]["run_id"] == run_id
