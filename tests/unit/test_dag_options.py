"""DagOptions: one options object for the factory's entry points, with the keyword arguments
DAG files already pass still working, and the names' one import home."""

from __future__ import annotations

import subprocess
import sys

import pytest
from airflow.sdk import DAG

from airflow_jobforge.config import parse_configuration
from airflow_jobforge.dag import DagOptions, JobForgeTaskGroup, build_dag, load_dags
from airflow_jobforge.dag.options import default_output_dir
from airflow_jobforge.errors import JobForgeError

CONFIG = {
    "jobs": [
        {"name": "a", "command": "true"},
        {"name": "b", "command": "true", "blocked_by": ["a"]},
    ],
}


def config():
    return parse_configuration(CONFIG)


def task_args(dag):
    submit = dag.task_dict["default.submit_0000"]
    wait = dag.task_dict["default.wait_0000"]
    return submit.cluster, submit.output_dir, wait.poll_interval, wait.deferrable


def test_an_options_object_builds_the_same_dag_as_keyword_arguments():
    options = DagOptions(backend="slurm", output_dir="/o", poll_interval=7.0, deferrable=False)
    by_object = build_dag(config(), "d", options)
    by_keywords = build_dag(
        config(), "d", backend="slurm", output_dir="/o", poll_interval=7.0, deferrable=False
    )
    assert task_args(by_object) == task_args(by_keywords)
    assert task_args(by_object)[1:] == ("/o", 7.0, False)
    assert set(by_object.task_dict) == set(by_keywords.task_dict)


def test_keyword_arguments_win_over_the_options_object_and_the_rest_go_to_the_dag():
    dag = build_dag(
        config(), "d", DagOptions(output_dir="/o", poll_interval=7.0), poll_interval=3.0, tags=["x"]
    )
    assert task_args(dag)[2] == 3.0
    assert dag.tags == {"x"}


def test_job_tasks_travels_in_the_options():
    many = build_dag(config(), "d", DagOptions(output_dir="/o", job_tasks=False))
    each = build_dag(config(), "d", DagOptions(output_dir="/o", job_tasks=True))
    assert not any(".job_" in t for t in many.task_dict)
    assert {"default.job_a", "default.job_b"} <= set(each.task_dict)


def test_the_output_dir_defaults_per_dag_and_a_relative_one_over_ssh_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", "/home/af")
    assert DagOptions().for_dag("d").output_dir == default_output_dir("d")
    assert default_output_dir("d") == "/home/af/jobforge-output/d"
    with pytest.raises(JobForgeError, match="absolute path on the cluster"):
        DagOptions(backend="slurm", ssh_conn_id="x", output_dir="rel").for_dag("d", "c.json")


def test_a_task_group_takes_options_and_passes_taskgroup_arguments_on():
    with DAG("outer", schedule=None) as dag:
        group = JobForgeTaskGroup("sims", config(), DagOptions(output_dir="/o"), tooltip="sims")
    assert group.tooltip == "sims"
    assert "sims.default.submit_0000" in dag.task_dict


def test_a_task_group_without_an_output_dir_is_refused():
    with DAG("outer", schedule=None), pytest.raises(JobForgeError, match="output_dir"):
        JobForgeTaskGroup("sims", config())


def test_load_dags_gives_every_config_the_same_options(tmp_path):
    for name in ("one", "two"):
        (tmp_path / f"{name}.json").write_text('{"jobs": [{"name": "a", "command": "true"}]}')
    dags = load_dags(tmp_path / "*.json", {}, DagOptions(output_dir="/o", poll_interval=9.0))
    assert {task_args(d)[2] for d in dags.values()} == {9.0}


def test_only_options_that_differ_from_the_defaults_are_written_out():
    options = DagOptions(backend="slurm", output_dir="/o", job_tasks=False)
    assert options.to_dict() == {"backend": "slurm", "output_dir": "/o", "job_tasks": False}
    assert DagOptions(**options.to_dict()) == options


def test_the_old_import_path_of_dag_files_still_works():
    from airflow_jobforge.factory import build_dag as old

    assert old is build_dag


def test_the_dag_package_and_its_pure_parts_import_no_airflow():
    code = (
        "import sys; import airflow_jobforge.dag.options, airflow_jobforge.dag.render, "
        "airflow_jobforge.dag.render_cache; "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
