"""Pipelines run by real Airflow (dag.test on its SQLite metadata DB): stage 2's config is
generated from stage 1's outputs, on the local backend, on the real cluster through the SLURM
CLI and over SSH; a failing stage stops the pipeline; an empty generated stage fails with the
stage, the command and the reason; clearing a failed task of a generated stage re-runs only
its job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_jobforge.config.pipeline import load_pipeline
from airflow_jobforge.dag.options import dag_id_for
from airflow_jobforge.dag.pipeline import build_pipeline_dag
from airflow_jobforge.rundir import collect_results, read_records
from airflow_jobforge.rundir.pipeline import read_pipeline_manifest, read_stage_status

from .airflow_helpers import clear_and_resume, run, task_states
from .test_airflow_e2e import backend_options

pytestmark = [pytest.mark.slurm, pytest.mark.embedded]

# Stage 2's generator: one job per output file of stage 1, and a `final` job blocked by all
# of them, in another batch (batches of 2): the blocked_by crosses batches of a generated stage.
GENERATOR = """\
import json, os, sys
previous = os.environ["JOBFORGE_PREVIOUS_STAGE_DIR"]
shared = sys.argv[1]
names = sorted(n for n in os.listdir(shared) if n.startswith("sim") and n.endswith(".txt"))
assert os.path.isdir(os.path.join(previous, "results")), "stage 1's run dir is there"
jobs = [
    {"name": "agg_" + n[:-4], "command": f"cat {shared}/{n} >> {shared}/agg.log; sleep 0.3"}
    for n in names
]
jobs.append({
    "name": "final",
    "command": f"echo final >> {shared}/agg.log; {os.environ.get('FINAL_EXTRA', '')}",
    "blocked_by": [j["name"] for j in jobs],
})
if os.environ.get("EMPTY_STAGE"):
    jobs = []
config = {"jobs": jobs, "submission_groups": [
    {"name": "default", "slurm": {"walltime": "5"}, "batching": {"per_node_batch_size": 2}}]}
json.dump(config, open(os.environ["JOBFORGE_STAGE_CONFIG"], "w"))
print("generated", len(jobs), "jobs; stage", os.environ["JADE_PIPELINE_STAGE_ID"])
"""


def shared_dir(cluster) -> Path:
    shared = Path(
        subprocess.check_output(["mktemp", "-d", "-p", str(cluster.shared)], text=True).strip()
    )
    shared.chmod(0o1777)
    return shared


def write_pipeline(
    directory: Path, shared: Path, *, failing: bool = False, command_env: str = ""
) -> Path:
    """simulate (a config file, 3 jobs) -> aggregate (generated from simulate's outputs)."""
    (shared / "gen.py").write_text(GENERATOR)
    sims = [{"name": f"sim{i}", "command": f"echo {i} > {shared}/sim{i}.txt"} for i in range(1, 4)]
    if failing:
        sims[1]["command"] = "exit 7"
    (directory / "sims.json").write_text(
        json.dumps(
            {
                "jobs": sims,
                "submission_groups": [
                    {"name": "default", "slurm": {"walltime": "5"}},
                ],
            }
        )
    )
    pipeline = {
        "stages": [
            {"name": "simulate", "config_file": "sims.json"},
            {
                "name": "aggregate",
                "command": f"{command_env}python3 {shared}/gen.py {shared}",
            },
        ]
    }
    path = directory / "twostage.json"
    path.write_text(json.dumps(pipeline))
    return path


@pytest.mark.parametrize("kind", ["local", "slurm", "ssh"])
def test_a_generated_stage_runs_from_the_previous_stage_outputs(kind, cluster, tmp_path):
    shared = shared_dir(cluster)
    pipeline = write_pipeline(tmp_path, shared)
    state, summary, run_dir = run(
        str(pipeline), output=str(shared / "out"), **backend_options(kind, cluster)
    )
    assert state == "success", summary
    assert str(summary) == "7 jobs: 7 successful, 0 failed, 0 canceled, 0 missing"
    stage2 = collect_results(run_dir / "aggregate")
    assert sorted(stage2) == ["agg_sim1", "agg_sim2", "agg_sim3", "final"]
    # blocked_by across two batches of the generated stage: final after every agg job
    assert stage2["final"].batch != stage2["agg_sim1"].batch
    assert stage2["final"].start >= max(stage2[f"agg_sim{i}"].end for i in (1, 2, 3))
    order = (shared / "agg.log").read_text().split()
    assert sorted(order[:3]) == ["1", "2", "3"] and order[3:] == ["final"]
    if kind != "local":
        assert stage2["final"].hpc_job_id, "ran under SLURM"
    manifest = read_pipeline_manifest(run_dir)
    assert [s.name for s in manifest.stages] == ["simulate", "aggregate"]
    assert read_stage_status(run_dir / "aggregate").state == "success"
    assert (run_dir / "output-stage1").resolve() == (run_dir / "simulate").resolve()
    states = task_states(dag_id_for(pipeline))
    assert states["aggregate.plan"] == "success"
    assert states["pipeline_summary"] == "success"
    assert _asset_events(dag_id_for(pipeline)) >= 2, "each stage emitted its Asset"


def _asset_events(dag_id: str) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name.like(f"{dag_id}.%"))
            .count()
        )


def test_a_failing_stage_stops_the_pipeline_and_later_stages_say_why(cluster, tmp_path):
    shared = shared_dir(cluster)
    pipeline = write_pipeline(tmp_path, shared, failing=True)
    state, summary, run_dir = run(str(pipeline), output=str(shared / "out"), backend="local")
    assert state == "failed"
    assert str(summary) == "3 jobs: 2 successful, 1 failed, 0 canceled, 0 missing"
    status = read_stage_status(run_dir / "aggregate")
    assert status.state == "skipped" and status.reason == "stage simulate failed"
    assert read_stage_status(run_dir / "simulate").state == "failed"
    assert not (shared / "agg.log").exists(), "the generator never ran"
    states = task_states(dag_id_for(pipeline))
    assert states["aggregate.start"] == "upstream_failed"
    assert states["pipeline_summary"] == "failed"


def test_an_empty_generated_stage_fails_with_the_stage_command_and_reason(cluster, tmp_path):
    shared = shared_dir(cluster)
    pipeline = write_pipeline(tmp_path, shared, command_env="EMPTY_STAGE=1 ")
    out = subprocess.run(
        [sys.executable, "-m", "airflow_jobforge.cli.main", "run", str(pipeline)]
        + ["--output", str(shared / "out"), "--airflow-home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "stage 'aggregate'" in text and "has no jobs" in text, text
    assert f"python3 {shared}/gen.py" in text and "generated 0 jobs" in text, text


def test_clearing_a_failed_task_of_a_generated_stage_reruns_only_its_job(cluster, tmp_path):
    shared = shared_dir(cluster)
    flag = shared / "final-ran-once"
    extra = f"test -e {flag} || {{ touch {flag}; exit 5; }}"
    pipeline = write_pipeline(tmp_path, shared, command_env=f"FINAL_EXTRA='{extra}' ")
    out = shared / "out"
    options = {"backend": "slurm", "python": sys.executable}
    state, summary, run_dir = run(str(pipeline), output=str(out), **options)
    assert state == "failed"
    assert str(summary) == "7 jobs: 6 successful, 1 failed, 0 canceled, 0 missing"
    first = collect_results(run_dir / "aggregate")["final"]
    assert first.return_code == 5

    dag_id = dag_id_for(pipeline)
    dag = build_pipeline_dag(
        load_pipeline(pipeline)[0], dag_id, output_dir=str(out), file=str(pipeline), **options
    )
    assert clear_and_resume(dag, ["aggregate.batches.results"]) in ("success", "failed")
    after = collect_results(run_dir / "aggregate")
    assert after["final"].succeeded and after["final"].hpc_job_id != first.hpc_job_id
    reruns = list((run_dir / "aggregate" / "results").glob("*-rerun*.jsonl"))
    assert [r.name for path in reruns for r in read_records(path)] == ["final"]
    lines = [
        r.name
        for path in (run_dir / "aggregate" / "results").glob("*.jsonl")
        for r in read_records(path)
    ]
    assert sorted(lines) == ["agg_sim1", "agg_sim2", "agg_sim3", "final", "final"]


def test_a_stop_stage_stops_every_later_stage_even_after_a_continue_stage(cluster, tmp_path):
    """first (stop) fails; second (continue) is skipped, so third is skipped too; a stage
    that never started counts no job (none missing)."""
    jobs = {"first": "exit 1", "second": "true", "third": "true"}
    stages = []
    for name, command in jobs.items():
        (tmp_path / f"{name}.json").write_text(
            json.dumps({"jobs": [{"name": f"{name}_job", "command": command}]})
        )
        stage = {"name": name, "config_file": f"{name}.json"}
        if name == "second":
            stage["on_failure"] = "continue"
        stages.append(stage)
    pipeline = tmp_path / "stops.json"
    pipeline.write_text(json.dumps({"stages": stages}))
    state, summary, run_dir = run(str(pipeline), output=str(tmp_path / "out"), backend="local")
    assert state == "failed"
    assert str(summary) == "1 jobs: 0 successful, 1 failed, 0 canceled, 0 missing"
    assert read_stage_status(run_dir / "first").state == "failed"
    for name in ("second", "third"):
        status = read_stage_status(run_dir / name)
        assert status.state == "skipped" and status.reason == "stage first failed", name
        assert not collect_results(run_dir / name), f"{name} ran"
    states = task_states(dag_id_for(pipeline))
    assert states["third.start"] in ("skipped", "upstream_failed")
    assert states["second.summary"] == "skipped"
