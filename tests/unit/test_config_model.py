from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pydantic import ValidationError

from airflow_jobforge.config import (
    Job,
    JobConfiguration,
    SlurmParams,
    SubmissionGroup,
    dump_config,
    load_config,
)
from airflow_jobforge.config.fields import parse_walltime
from airflow_jobforge.errors import JobForgeError


def test_config_without_groups_gets_a_default_group_holding_every_job():
    config = JobConfiguration(jobs=[Job(name="a", command="true")])
    assert [g.name for g in config.submission_groups] == ["default"]
    assert config.jobs[0].submission_group == "default"


def test_jobs_without_group_join_the_only_group():
    config = JobConfiguration.model_validate(
        {"jobs": [{"name": "a", "command": "true"}], "submission_groups": [{"name": "cpu"}]}
    )
    assert config.jobs[0].submission_group == "cpu"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", timedelta(minutes=30)),
        ("30:15", timedelta(minutes=30, seconds=15)),
        ("4:00:00", timedelta(hours=4)),
        ("2-12", timedelta(days=2, hours=12)),
        ("2-12:30", timedelta(days=2, hours=12, minutes=30)),
        ("1-00:00:05", timedelta(days=1, seconds=5)),
    ],
)
def test_every_slurm_walltime_form_parses(text, expected):
    assert parse_walltime(text) == expected


@pytest.mark.parametrize("walltime", ["", "1h", "4:00:00:00", "1-", "-1", "1:2:3;rm"])
def test_malformed_walltime_is_rejected(walltime):
    with pytest.raises(ValidationError, match="walltime"):
        SlurmParams(walltime=walltime)


@pytest.mark.parametrize(
    "gres", ["gpu", "gpu:2", "gpu:a100:2", "gpu:a100:1,shard:4", "gres/gpu:1", "mps:100"]
)
def test_any_valid_gres_string_is_accepted(gres):
    assert SlurmParams(gres=gres).gres == gres


@pytest.mark.parametrize("gres", ["", "gpu:", "gpu 2", "gpu:2;id", ":2", "gpu:$(id)"])
def test_malformed_gres_is_rejected(gres):
    with pytest.raises(ValidationError, match="gres"):
        SlurmParams(gres=gres)


@pytest.mark.parametrize("mem", ["10G", "512M", "2048", "1T"])
def test_memory_sizes_are_accepted(mem):
    assert SlurmParams(mem=mem, tmp=mem).mem == mem


@pytest.mark.parametrize("mem", ["10GB", "ten", "-1G", "1.5G", "10G "])
def test_malformed_memory_is_rejected(mem):
    with pytest.raises(ValidationError, match="SLURM size"):
        SlurmParams(mem=mem)


@pytest.mark.parametrize(
    "name", ["a b", "a/b", ".hidden", "-opt", "..", "x;rm -rf", "$(id)", "a\nb", "é", "x" * 201]
)
def test_names_unusable_as_task_id_or_file_name_are_rejected(name):
    with pytest.raises(ValidationError, match="not a valid job name"):
        Job(name=name, command="true")


@pytest.mark.parametrize("value", ["debug;id", "a b", "$(id)", "'x'", "a\nb"])
def test_partition_and_account_with_shell_characters_are_rejected(value):
    with pytest.raises(ValidationError):
        SlurmParams(partition=value)
    with pytest.raises(ValidationError):
        SlurmParams(account=value)


def test_group_names_may_not_contain_dots_because_airflow_joins_ids_with_them():
    with pytest.raises(ValidationError, match="submission group name"):
        SubmissionGroup(name="a.b")


def test_extra_sbatch_options_must_be_long_options_and_not_ones_jobforge_owns():
    assert SlurmParams(extra=("--exclusive", "--mail-type=END")).extra
    for bad in ("-N 2", "--output=/tmp/x", "--job-name=x", "exclusive", "--x=a\nb"):
        with pytest.raises(ValidationError):
            SlurmParams(extra=(bad,))


def test_time_based_batching_needs_num_processes():
    with pytest.raises(ValidationError, match="num_processes"):
        SubmissionGroup.model_validate({"name": "g", "batching": {"time_based_batching": True}})


def test_empty_command_is_rejected():
    with pytest.raises(ValidationError, match="command is empty"):
        Job(name="a", command="   ")


def _rich_config() -> JobConfiguration:
    return JobConfiguration.model_validate(
        {
            "jobs": [
                {
                    "name": "a",
                    "command": "echo 'a b' \"$HOME\"",
                    "estimated_run_minutes": 1.5,
                    "submission_group": "cpu",
                    "ext": {"k": [1, 2, {"x": "y"}]},
                },
                {
                    "name": "b",
                    "command": "true",
                    "blocked_by": ["a"],
                    "cancel_on_blocking_job_failure": True,
                    "submission_group": "gpu",
                },
            ],
            "submission_groups": [
                {
                    "name": "cpu",
                    "slurm": {
                        "account": "acct",
                        "partition": "debug",
                        "qos": "high",
                        "walltime": "1:00:00",
                        "mem": "4G",
                        "nodes": 2,
                        "extra": ["--exclusive"],
                    },
                    "batching": {
                        "per_node_batch_size": 10,
                        "num_processes": 4,
                        "try_add_blocked_jobs": False,
                    },
                },
                {
                    "name": "gpu",
                    "slurm": {"gres": "gpu:a100:2", "constraint": "a100&ib"},
                    "container": {"image": "/images/app.sif", "bind": ["/scratch"]},
                },
            ],
            "setup_command": "mkdir -p out",
            "teardown_command": "echo done",
            "node_setup_command": "module load x",
            "node_teardown_command": "rm -rf /tmp/x",
            "user_data": {"key": {"nested": [1, 2]}},
            "job_post_process_config": {"module": "pkg.mod", "class": "Post", "data": {"n": 1}},
            "job_global_config": {"g": 1},
        }
    )


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_json_and_toml_round_trip_losslessly(tmp_path, suffix):
    config = _rich_config()
    path = tmp_path / f"config{suffix}"
    dump_config(config, path)
    again = load_config(path)
    assert again == config
    dump_config(again, tmp_path / f"again{suffix}")
    assert (tmp_path / f"again{suffix}").read_text() == path.read_text()


def test_post_process_config_is_written_with_the_class_key_users_write():
    data = json.loads(json.dumps(_rich_config().model_dump(mode="json", by_alias=True)))
    assert data["job_post_process_config"]["class"] == "Post"


def test_user_data_add_get_remove_list():
    config = JobConfiguration()
    config.add_user_data("b", {"x": 1})
    config.add_user_data("a", 2)
    assert config.list_user_data_keys() == ["a", "b"]
    assert config.get_user_data("b") == {"x": 1}
    with pytest.raises(JobForgeError, match="already exists"):
        config.add_user_data("a", 3)
    config.remove_user_data("a")
    assert config.list_user_data_keys() == ["b"]
    with pytest.raises(JobForgeError, match="not stored"):
        config.get_user_data("a")
