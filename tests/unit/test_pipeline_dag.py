"""Pipeline -> DAG (`dag.pipeline`, `dag.loading`), built and serialized, never run: a
TaskGroup per stage between its gate and its Asset, a generated stage as a plan task and one
mapped batch group, the stages chained by their `on_failure`, and a folder where pipelines
and configs become DAGs side by side, a broken pipeline a placeholder."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from airflow.sdk import Asset
from airflow.sdk.definitions.taskgroup import MappedTaskGroup

from airflow_jobforge.config.pipeline import load_pipeline
from airflow_jobforge.dag.loading import load_dags
from airflow_jobforge.dag.pipeline import build_pipeline_dag
from airflow_jobforge.operators.planned import PlannedSubmitOperator
from airflow_jobforge.operators.stage import (
    PipelineSummaryOperator,
    StageDoneOperator,
    StagePlanOperator,
    StageStartOperator,
    stage_asset,
)
from airflow_jobforge.sensors.planned import PlannedJobSensor

SIMS = {
    "jobs": [{"name": f"sim{i}", "command": f"echo {i}"} for i in range(1, 4)],
    "submission_groups": [
        {"name": "default", "slurm": {"walltime": "5"}, "batching": {"per_node_batch_size": 2}}
    ],
}
GENERATOR = "python3 /opt/gen.py \"$JOBFORGE_PREVIOUS_STAGE_DIR\" '$(not expanded)'"


def write_pipeline(directory: Path, *stages: dict, name: str = "twostage.json") -> Path:
    (directory / "sims.json").write_text(json.dumps(SIMS))
    stages = stages or (
        {"name": "simulate", "config_file": "sims.json"},
        {"name": "aggregate", "command": GENERATOR},
    )
    path = directory / name
    path.write_text(json.dumps({"stages": list(stages)}))
    return path


def pipeline_dag(path: Path, dag_id: str = "jobforge_twostage", **options):
    pipeline, _ = load_pipeline(path)
    return build_pipeline_dag(pipeline, dag_id, output_dir="/tmp/o", file=str(path), **options)


@pytest.fixture
def dag(tmp_path):
    return pipeline_dag(write_pipeline(tmp_path))


# --- the shape -------------------------------------------------------------------------------


def test_each_stage_is_a_task_group_between_its_start_and_done(dag):
    ids = set(dag.task_dict)
    assert {
        "simulate.start",
        "simulate.default.submit_0000",
        "simulate.default.wait_0000",
        "simulate.default.submit_0001",
        "simulate.default.job_sim1",
        "simulate.summary",
        "simulate.done",
        "aggregate.start",
        "aggregate.plan",
        "aggregate.batches.submit",
        "aggregate.batches.wait",
        "aggregate.batches.results",
        "aggregate.summary",
        "aggregate.done",
        "pipeline_summary",
    } <= ids
    assert set(dag.task_group.children) == {"simulate", "aggregate", "pipeline_summary"}
    assert isinstance(dag.task_dict["simulate.start"], StageStartOperator)
    assert isinstance(dag.task_dict["aggregate.plan"], StagePlanOperator)
    assert isinstance(dag.task_dict["pipeline_summary"], PipelineSummaryOperator)


def test_a_static_stage_is_the_configs_own_tasks_between_its_start_and_done(dag):
    start, done = dag.task_dict["simulate.start"], dag.task_dict["simulate.done"]
    assert start.downstream_task_ids == {
        "simulate.default.submit_0000",
        "simulate.default.submit_0001",
    }
    assert done.upstream_task_ids == {"simulate.summary"}


def test_a_generated_stage_is_a_plan_task_and_one_mapped_batch_group(dag):
    group = dag.task_group_dict["aggregate.batches"]
    assert isinstance(group, MappedTaskGroup)
    assert set(group.children) == {
        "aggregate.batches.submit",
        "aggregate.batches.wait",
        "aggregate.batches.results",
    }
    submit = dag.task_dict["aggregate.batches.submit"]
    wait = dag.task_dict["aggregate.batches.wait"]
    assert isinstance(submit, PlannedSubmitOperator) and isinstance(wait, PlannedJobSensor)
    assert submit.plan_task_id == wait.plan_task_id == "aggregate.plan"
    assert submit.wait_task_id == "aggregate.batches.wait"
    assert dag.task_dict["aggregate.plan"].downstream_task_ids == {
        "aggregate.batches.submit",
        "aggregate.summary",
    }
    assert submit.downstream_task_ids == {"aggregate.batches.wait"}
    assert wait.downstream_task_ids == {"aggregate.batches.results"}
    assert dag.task_dict["aggregate.batches.results"].downstream_task_ids == {"aggregate.summary"}
    assert dag.task_dict["aggregate.done"].upstream_task_ids == {"aggregate.summary"}


def test_the_plan_task_carries_the_generator_intact_and_where_the_stage_sits(dag):
    plan = dag.task_dict["aggregate.plan"]
    assert plan.command == GENERATOR
    assert (plan.number, plan.earlier, plan.config_output) == (2, ["simulate"], None)


def test_batch_results_and_summaries_run_whatever_the_batches_did(dag):
    for task_id in ("aggregate.batches.results", "aggregate.summary", "pipeline_summary"):
        assert dag.task_dict[task_id].trigger_rule == "all_done", task_id


def test_each_stage_runs_after_the_one_before_succeeded(dag):
    assert dag.task_dict["simulate.start"].upstream_task_ids == set()
    assert dag.task_dict["aggregate.start"].upstream_task_ids == {"simulate.done"}
    assert dag.task_dict["aggregate.start"].trigger_rule == "all_success"
    assert dag.task_dict["pipeline_summary"].upstream_task_ids == {
        "simulate.done",
        "aggregate.done",
    }


def test_a_stage_after_one_that_continues_on_failure_starts_when_it_ended(tmp_path):
    path = write_pipeline(
        tmp_path,
        {"name": "simulate", "config_file": "sims.json", "on_failure": "continue"},
        {"name": "aggregate", "command": GENERATOR},
        {"name": "report", "config_file": "sims.json"},
    )
    dag = pipeline_dag(path)
    assert dag.task_dict["aggregate.start"].trigger_rule == "all_done"
    assert dag.task_dict["report.start"].trigger_rule == "all_success"
    assert dag.task_dict["pipeline_summary"].on_failure == {
        "simulate": "continue",
        "aggregate": "stop",
        "report": "stop",
    }


def test_every_task_of_a_stage_carries_the_stage_and_the_pipelines_own_tasks_none(dag):
    for task_id, task in dag.task_dict.items():
        stage = task_id.split(".")[0] if "." in task_id else None
        assert task.stage == stage, task_id


def test_each_stage_done_emits_the_stages_asset(dag):
    for stage in ("simulate", "aggregate"):
        done = dag.task_dict[f"{stage}.done"]
        assert isinstance(done, StageDoneOperator)
        assert done.outlets == [stage_asset("jobforge_twostage", stage)]
    asset = stage_asset("jobforge_twostage", "aggregate")
    assert isinstance(asset, Asset)
    assert (asset.name, asset.uri) == (
        "jobforge_twostage.aggregate",
        "x-jobforge://jobforge_twostage/aggregate",
    )


def test_the_gate_carries_the_stages_for_the_run_manifest(dag, tmp_path):
    manifest = dag.task_dict["simulate.start"].manifest
    assert manifest["pipeline_file"] == str(tmp_path / "twostage.json")
    assert [(s["name"], s["number"], s["kind"]) for s in manifest["stages"]] == [
        ("simulate", 1, "config"),
        ("aggregate", 2, "generated"),
    ]
    assert manifest["stages"][0]["config_file"] == str(tmp_path / "sims.json")
    assert manifest["stages"][1]["command"] == GENERATOR


def test_a_stages_options_replace_the_pipelines_for_its_tasks_alone(tmp_path):
    path = write_pipeline(
        tmp_path,
        {"name": "simulate", "config_file": "sims.json", "options": {"poll_interval": 30}},
        {"name": "aggregate", "command": GENERATOR, "options": {"workdir": "/scratch/agg"}},
    )
    dag = pipeline_dag(path, poll_interval=5.0)
    assert dag.task_dict["simulate.default.wait_0000"].poll_interval == 30
    assert dag.task_dict["aggregate.batches.wait"].poll_interval == 5.0
    assert dag.task_dict["aggregate.batches.submit"].workdir == "/scratch/agg"


def test_a_static_stages_overrides_reach_its_submit_tasks(tmp_path):
    path = write_pipeline(
        tmp_path,
        {
            "name": "simulate",
            "config_file": "sims.json",
            "overrides": {"slurm": {"account": "proj"}, "batching": {"per_node_batch_size": 3}},
        },
    )
    dag = pipeline_dag(path)
    submits = [t for t in dag.task_dict if ".submit_" in t]
    assert submits == ["simulate.default.submit_0000"]
    submit = dag.task_dict["simulate.default.submit_0000"]
    assert submit.slurm["account"] == "proj" and submit.slurm["walltime"] == "5"


def test_a_generated_stages_overrides_go_to_its_plan_task(tmp_path):
    path = write_pipeline(
        tmp_path,
        {"name": "simulate", "config_file": "sims.json"},
        {"name": "aggregate", "command": GENERATOR, "overrides": {"slurm": {"qos": "high"}}},
    )
    overrides = pipeline_dag(path).task_dict["aggregate.plan"].overrides
    assert overrides["slurm"] == {"qos": "high"} and not overrides.get("batching")


def test_the_dag_says_what_it_is_and_runs_one_at_a_time(dag):
    assert dag.max_active_runs == 1
    assert {"jobforge", "pipeline"} <= set(dag.tags)
    assert "`simulate`, `aggregate`" in dag.doc_md
    assert {"jobs", "rerun_of"} <= set(dag.params)


def test_the_dag_serializes_and_reads_back_with_its_mapped_group_and_assets(dag):
    from tests.airflow_versions import DagSerialization

    data = DagSerialization.to_dict(dag)
    json.dumps(data, default=str)
    back = DagSerialization.from_dict(data)
    assert set(back.task_dict) == set(dag.task_dict)
    assert back.task_group_dict["aggregate.batches"].is_mapped
    assert [a.uri for a in back.task_dict["aggregate.done"].outlets] == [
        "x-jobforge://jobforge_twostage/aggregate"
    ]
    assert back.task_dict["aggregate.start"].upstream_task_ids == {"simulate.done"}


# --- a folder of DAG files -------------------------------------------------------------------


def test_a_folder_with_a_pipeline_and_a_config_gives_a_dag_each(tmp_path):
    write_pipeline(tmp_path)
    namespace: dict = {}
    dags = load_dags(tmp_path / "*.json", namespace, output_dir="/tmp/o")
    assert set(dags) == set(namespace) == {"jobforge_twostage", "jobforge_sims"}
    assert "aggregate.plan" in dags["jobforge_twostage"].task_dict
    assert "pipeline" in dags["jobforge_twostage"].tags
    assert "default.submit_0000" in dags["jobforge_sims"].task_dict


def test_a_jade_pipeline_file_becomes_a_pipeline_dag(tmp_path):
    (tmp_path / "sims.json").write_text(json.dumps(SIMS))
    jade = {
        "stages": [
            {"config_file": "sims.json", "stage_num": 1, "submitter_params": {}},
            {
                "auto_config_cmd": "bash make_stage2.sh",
                "config_file": "config-stage2.json",
                "stage_num": 2,
                "submitter_params": {},
            },
        ],
        "stage_num": 1,
        "is_complete": False,
    }
    (tmp_path / "pipeline.toml").write_text(json.dumps(jade))  # JADE writes JSON there
    dags = load_dags(tmp_path / "pipeline.toml", {}, output_dir="/tmp/o")
    dag = dags["jobforge_pipeline"]
    assert {"stage1.start", "stage2.plan", "stage2.batches.submit"} <= set(dag.task_dict)
    assert dag.task_dict["stage2.start"].trigger_rule == "all_done"  # JADE went on regardless
    assert dag.task_dict["stage2.plan"].config_output == "config-stage2.json"


@pytest.mark.parametrize(
    ("stages", "reason"),
    [
        (
            [{"name": "simulate", "config_file": "sims.json", "command": "gen"}],
            "give exactly one of config_file and command",
        ),
        ([{"name": "simulate", "config_file": "nowhere.json"}], "nowhere.json"),
        ([{"name": "output-stage1", "command": "gen"}], "reserved"),
    ],
    ids=["both sources", "missing config", "reserved name"],
)
def test_a_broken_pipeline_becomes_a_placeholder_and_hides_no_other_dag(tmp_path, stages, reason):
    write_pipeline(tmp_path, *stages, name="broken.json")
    (tmp_path / "good.json").write_text(
        json.dumps({"stages": [{"name": "only", "config_file": "sims.json"}]})
    )
    dags = load_dags(tmp_path / "*.json", {}, output_dir="/tmp/o")
    assert set(dags) == {"jobforge_broken", "jobforge_good", "jobforge_sims"}
    broken = dags["jobforge_broken"]
    assert list(broken.task_dict) == ["config_error"]
    assert broken.description.startswith("BROKEN CONFIG")
    assert broken.dag_display_name == "BROKEN CONFIG jobforge_broken"
    assert reason in broken.doc_md
    assert "only.done" in dags["jobforge_good"].task_dict


def test_a_broken_config_of_a_static_stage_makes_its_pipeline_a_placeholder_naming_the_stage(
    tmp_path,
):
    path = write_pipeline(tmp_path)
    (tmp_path / "sims.json").write_text(
        json.dumps({"jobs": [{"name": "a", "command": "x", "blocked_by": ["nobody"]}]})
    )
    dags = load_dags(path, {}, output_dir="/tmp/o")
    broken = dags["jobforge_twostage"]
    assert list(broken.task_dict) == ["config_error"]
    assert "simulate" in broken.doc_md and "nobody" in broken.doc_md


# --- the example DAG file --------------------------------------------------------------------


def test_the_example_downstream_dag_is_scheduled_on_the_asset_the_stage_emits():
    example = Path(__file__).parents[2] / "dags" / "jobforge_pipeline_example.py"
    namespace = runpy.run_path(str(example))
    pipeline, downstream = namespace["pipeline"], namespace["downstream"]
    emitted = pipeline.task_dict["aggregate.done"].outlets
    assert emitted == [stage_asset(pipeline.dag_id, "aggregate")]
    assert list(downstream.timetable.asset_condition.objects) == emitted
