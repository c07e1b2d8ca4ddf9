"""The group option `spark`: what the config accepts and refuses, and how the planner carries it
to the node as a batch's SparkSpec. No JVM, no SLURM."""

from __future__ import annotations

import json

import pytest

from airflow_jobforge.cli.main import main
from airflow_jobforge.config import load_config, parse_configuration
from airflow_jobforge.config.models import SparkParams
from airflow_jobforge.errors import ConfigError
from airflow_jobforge.planning.planner import batch_spec, plan_batches, spark_spec
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec, SparkSpec, array_task

FULL_SPARK = {
    "worker_memory": "6G",
    "worker_cores": 4,
    "driver_memory": "2G",
    "executor_memory": "3G",
    "memory_overhead": "512M",
    "conf": {"spark.sql.shuffle.partitions": "64", "spark.cores.max": "2"},
    "local_dir": "/scratch/local",
    "spark_home": "/opt/spark",
    "startup_timeout_s": 30,
    "concurrent_jobs": 2,
}


def job(name: str, **kw):
    return {"name": name, "command": "spark-submit job.py", **kw}


def spark_config(spark: dict, **batching):
    return {
        "jobs": [job("a"), job("b")],
        "submission_groups": [{"name": "sp", "spark": spark, "batching": batching}],
    }


def problems_of(data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_configuration(data, file="jobs.json")
    return [str(p) for p in info.value.problems]


# --- accepted ------------------------------------------------------------------------------
def test_a_group_with_an_empty_spark_table_gets_the_defaults():
    group = parse_configuration(spark_config({})).group("sp")
    assert group.spark == SparkParams()
    assert group.spark.enabled and group.spark.driver_memory == "1G"
    assert group.spark.memory_overhead == "1G" and group.spark.startup_timeout_s == 120
    assert group.spark.conf == {} and group.spark.worker_memory is None
    assert group.spark_enabled
    assert group.num_processes == 1  # concurrent_jobs: one Spark job at a time


def test_a_group_without_spark_has_no_cluster():
    group = parse_configuration({"jobs": [job("a")], "submission_groups": [{"name": "g"}]}).group(
        "g"
    )
    assert group.spark is None and not group.spark_enabled
    assert spark_spec(group) is None


def test_every_spark_field_is_kept():
    spark = parse_configuration(spark_config(FULL_SPARK)).group("sp").spark
    assert spark is not None
    assert spark.model_dump() == {"enabled": True, **FULL_SPARK}


def test_num_processes_equal_to_concurrent_jobs_is_accepted():
    group = parse_configuration(spark_config({"concurrent_jobs": 3}, num_processes=3)).group("sp")
    assert group.num_processes == 3


def test_the_json_schema_describes_the_spark_option(capsys):
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "spark" in schema["$defs"]["SubmissionGroup"]["properties"]
    spark = schema["$defs"]["SparkParams"]["properties"]
    assert {"enabled", "conf", "local_dir", "spark_home", "concurrent_jobs"} <= set(spark)
    assert schema["$defs"]["SparkParams"].get("additionalProperties") is False


# --- refused -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("conf", "words"),
    [
        ({"master": "local[*]"}, "must be spark.<name>"),
        ({"SPARK.master.x": "1"}, "must be spark.<name>"),
        ({"spark.a b": "1"}, "must be spark.<name>"),
        ({"spark.master": "local[*]"}, "is set by jobforge"),
        ({"spark.eventLog.dir": "/tmp/ev"}, "is set by jobforge"),
        ({"spark.local.dir": "/tmp/x"}, "use local_dir"),
        ({"spark.app.name": "a\nb"}, "without control characters"),
        ({"spark.app.name": "a\x7fb"}, "without control characters"),
    ],
    ids=[
        "a conf key not spark.* is refused",
        "a conf key with an upper-case prefix is refused",
        "a conf key with a space is refused",
        "a conf key spark.master is refused",
        "a conf key spark.eventLog.dir is refused",
        "a conf key spark.local.dir is refused and local_dir named",
        "a newline in a conf value is refused",
        "a DEL in a conf value is refused",
    ],
)
def test_bad_conf_entries_are_refused_naming_the_group(conf, words):
    problems = problems_of(spark_config({"conf": conf}))
    assert len(problems) == 1
    assert problems[0].startswith("group 'sp': spark.conf: ")
    assert words in problems[0]


@pytest.mark.parametrize("field", ["local_dir", "spark_home"])
@pytest.mark.parametrize("value", ["scratch", "./spark", "~/spark", "/opt/sp\nark", ""])
def test_a_relative_or_control_character_path_is_refused(field, value):
    problems = problems_of(spark_config({field: value}))
    assert problems == [
        f"group 'sp': spark.{field}: {value!r} must be an absolute path without control characters"
    ]


def test_num_processes_other_than_concurrent_jobs_is_refused():
    problems = problems_of(spark_config({"concurrent_jobs": 2}, num_processes=4))
    assert len(problems) == 1
    assert problems[0].startswith("group 'sp': ")
    assert "batching.num_processes=4" in problems[0]
    assert "spark.concurrent_jobs=2" in problems[0]


@pytest.mark.parametrize(
    "spark",
    [
        {"worker_memory": "lots"},
        {"driver_memory": "1.5G"},
        {"worker_cores": 0},
        {"concurrent_jobs": 0},
        {"startup_timeout_s": 0},
        {"conf": {"spark.executor.cores": 2}},
        {"unknown": 1},
    ],
    ids=[
        "a worker_memory that is no size is refused",
        "a fractional driver_memory is refused",
        "zero worker_cores are refused",
        "zero concurrent_jobs are refused",
        "a zero startup timeout is refused",
        "a conf value that is no text is refused",
        "an unknown spark field is refused",
    ],
)
def test_bad_spark_fields_are_refused(spark):
    problems = problems_of(spark_config(spark))
    assert len(problems) == 1 and problems[0].startswith("group 'sp': spark")


def test_a_config_file_with_several_spark_errors_reports_them_all_at_once(tmp_path):
    path = tmp_path / "jobs.json"
    data = {
        "jobs": [
            job("a", submission_group="keys"),
            job("b", submission_group="paths"),
            job("c", submission_group="fine"),
        ],
        "submission_groups": [
            {"name": "keys", "spark": {"conf": {"spark.master": "yarn"}, "worker_cores": 0}},
            {"name": "paths", "spark": {"local_dir": "tmp", "spark_home": "spark"}},
            {"name": "fine", "spark": {"concurrent_jobs": 2}},
        ],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 4, problems
    assert any(p.startswith("group 'keys': spark.conf: ") and "spark.master" in p for p in problems)
    assert any(p.startswith("group 'keys': spark.worker_cores: ") for p in problems)
    assert any(p.startswith("group 'paths': spark.local_dir: 'tmp'") for p in problems)
    assert any(p.startswith("group 'paths': spark.spark_home: 'spark'") for p in problems)
    assert "4 problems in configuration" in str(info.value)


# A group-level error (SubmissionGroup's model validator: num_processes vs concurrent_jobs) has
# the location (submission_groups, i): only that group is set aside, not every group.
def test_a_num_processes_mismatch_is_the_only_problem_of_a_several_group_config():
    data = {
        "jobs": [job("a", submission_group="procs"), job("b", submission_group="fine")],
        "submission_groups": [
            {"name": "procs", "spark": {}, "batching": {"num_processes": 8}},
            {"name": "fine"},
        ],
    }
    problems = problems_of(data)
    assert len(problems) == 1 and problems[0].startswith("group 'procs': "), problems


def test_a_num_processes_mismatch_is_reported_with_another_groups_spark_errors():
    data = {
        "jobs": [job("a", submission_group="procs"), job("b", submission_group="keys")],
        "submission_groups": [
            {"name": "procs", "spark": {}, "batching": {"num_processes": 8}},
            {"name": "keys", "spark": {"conf": {"foo": "1"}}},
        ],
    }
    problems = problems_of(data)
    assert len(problems) == 2, problems
    assert any(p.startswith("group 'procs': ") and "num_processes=8" in p for p in problems)
    assert any(p.startswith("group 'keys': spark.conf: ") for p in problems)


def test_a_disabled_spark_gives_no_spark_spec_and_num_processes_from_batching():
    # concurrent_jobs is not compared with num_processes when the cluster is off
    cfg = parse_configuration(
        spark_config({"enabled": False, "concurrent_jobs": 2}, num_processes=4)
    )
    group = cfg.group("sp")
    assert not group.spark_enabled
    assert group.num_processes == 4
    assert spark_spec(group) is None
    plan = plan_batches(cfg)
    spec = batch_spec(cfg, plan, plan.batches[0])
    assert spec.spark is None and spec.num_processes == 4


# --- planner and batch file ----------------------------------------------------------------
def spark_batch() -> BatchSpec:
    cfg = parse_configuration(spark_config(FULL_SPARK))
    plan = plan_batches(cfg)
    assert len(plan.batches) == 1
    return batch_spec(cfg, plan, plan.batches[0])


def test_a_spark_groups_batch_carries_the_groups_spark_values():
    spec = spark_batch()
    assert spec.spark == SparkSpec(
        worker_memory="6G",
        worker_cores=4,
        driver_memory="2G",
        executor_memory="3G",
        memory_overhead="512M",
        conf={"spark.sql.shuffle.partitions": "64", "spark.cores.max": "2"},
        local_dir="/scratch/local",
        spark_home="/opt/spark",
        startup_timeout_s=30.0,
    )
    assert spec.num_processes == 2  # concurrent_jobs
    assert [j.name for j in spec.jobs] == ["a", "b"]


def test_a_default_spark_groups_batch_runs_one_job_at_a_time():
    cfg = parse_configuration(spark_config({}))
    plan = plan_batches(cfg)
    spec = batch_spec(cfg, plan, plan.batches[0])
    assert spec.spark == SparkSpec()
    assert spec.num_processes == 1


def test_the_batch_specs_conf_is_not_the_configs_dict():
    cfg = parse_configuration(spark_config({"conf": {"spark.cores.max": "2"}}))
    group = cfg.group("sp")
    spec = spark_spec(group)
    assert spec is not None and group.spark is not None
    assert spec.conf == group.spark.conf and spec.conf is not group.spark.conf


def test_a_batch_file_keeps_spark_through_dict_json_and_file(tmp_path):
    spec = spark_batch()
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["spark"]["conf"] == {"spark.sql.shuffle.partitions": "64", "spark.cores.max": "2"}
    assert BatchSpec.from_dict(data) == spec
    spec.dump(tmp_path / "b.json")
    loaded = BatchSpec.load(tmp_path / "b.json")
    assert loaded == spec and isinstance(loaded.spark, SparkSpec)


def test_a_batch_without_spark_round_trips_with_spark_none():
    spec = BatchSpec(batch="b", jobs=(JobSpec("a", "true"),))
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["spark"] is None
    assert BatchSpec.from_dict(data) == spec


def test_a_batch_file_written_before_spark_loads_with_spark_none(tmp_path):
    data = BatchSpec(batch="b", jobs=(JobSpec("a", "true"),), num_processes=2).to_dict()
    del data["spark"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    loaded = BatchSpec.load(path)
    assert loaded.spark is None and loaded.num_processes == 2


def test_an_array_task_keeps_the_batchs_spark():
    spec = spark_batch()
    task = array_task(spec, 1)
    assert task.spark == spec.spark
    assert [j.name for j in task.jobs] == ["b"] and task.batch == f"{spec.batch}.1"
