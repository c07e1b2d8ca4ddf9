"""Pipeline files: the model, every problem at once, and JADE pipelines as `jade pipeline create`
(nrel-jade 0.12.0) really writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_jobforge.config import (
    JobConfiguration,
    Pipeline,
    PipelineStage,
    StageOverrides,
    apply_stage_overrides,
    dump_pipeline,
    is_pipeline_data,
    is_pipeline_file,
    load_config,
    load_pipeline,
    load_stage_config,
    parse_pipeline,
    resolve_config_file,
)
from airflow_jobforge.config.pipeline import pipeline_json_schema, read_pipeline_data
from airflow_jobforge.errors import ConfigError, JobForgeError

JADE = Path(sys.executable).parent / "jade"
# Under CI=true the JADE tests run or fail, never skip: the test extra installs nrel-jade.
needs_jade = pytest.mark.skipif(
    not JADE.exists() and os.environ.get("CI") != "true",
    reason="nrel-jade (test extra) not installed",
)


def write_config(path: Path, jobs: list[dict] | None = None, walltime: str = "1:00:00") -> Path:
    jobs = jobs or [
        {"name": "a", "command": "echo a", "estimated_run_minutes": 10},
        {"name": "b", "command": "echo b", "blocked_by": ["a"], "estimated_run_minutes": 20},
    ]
    data = {"jobs": jobs, "submission_groups": [{"name": "cpu", "slurm": {"walltime": walltime}}]}
    path.write_text(json.dumps(data))
    return path


def write_pipeline(path: Path, stages: list[dict], **top) -> Path:
    path.write_text(json.dumps({"stages": stages, **top}))
    return path


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


def jade(cwd: Path, *args: str) -> None:
    subprocess.run([str(JADE), *args], cwd=cwd, check=True, capture_output=True, text=True)


def jade_hpc_config(cwd: Path, *extra: str) -> None:
    jade(cwd, "config", "hpc", "-a", "myacct", "-p", "debug", "-w", "1:00:00", *extra)


# --- our format ----------------------------------------------------------------------------


def test_a_pipeline_of_a_config_file_and_a_generator_loads(tmp_path):
    write_config(tmp_path / "prepare.json")
    path = write_pipeline(
        tmp_path / "p.json",
        [
            {"name": "prepare", "config_file": "prepare.json"},
            {
                "name": "aggregate",
                "command": "python gen.py > /dev/null",
                "overrides": {"slurm": {"partition": "short"}, "max_concurrent_batches": 2},
                "options": {"poll_interval": 5, "job_tasks": True},
                "on_failure": "continue",
            },
        ],
        description="two stages",
    )
    pipeline, notes = load_pipeline(path)
    assert notes == []
    assert [s.name for s in pipeline.stages] == ["prepare", "aggregate"]
    assert pipeline.stage_number("aggregate") == 2
    aggregate = pipeline.stage("aggregate")
    assert aggregate.is_generated and aggregate.config_output_path == "aggregate/config.json"
    assert aggregate.overrides.slurm.partition == "short"
    assert aggregate.options.given() == {"poll_interval": 5, "job_tasks": True}
    assert aggregate.on_failure == "continue" and pipeline.stage("prepare").on_failure == "stop"
    assert resolve_config_file(path, pipeline.stage("prepare")) == str(tmp_path / "prepare.json")


def test_an_unknown_stage_name_is_an_error():
    pipeline = Pipeline(stages=[PipelineStage(name="s", command="true")])
    with pytest.raises(JobForgeError, match="no pipeline stage named 'x'"):
        pipeline.stage("x")


def test_a_toml_pipeline_loads_like_the_json_one_and_dumps_round_trip(tmp_path):
    write_config(tmp_path / "c.json")
    (tmp_path / "p.toml").write_text(
        'description = "toml"\n\n[[stages]]\nname = "one"\nconfig_file = "c.json"\n\n'
        "[stages.overrides.batching]\nper_node_batch_size = 3\n\n"
        '[[stages]]\nname = "two"\ncommand = "bash gen.sh"\nconfig_output = "two/c.toml"\n'
    )
    pipeline, _ = load_pipeline(tmp_path / "p.toml")
    assert pipeline.stage("one").overrides.batching.per_node_batch_size == 3
    assert pipeline.stage("two").config_output_path == "two/c.toml"
    for name in ("again.toml", "again.json"):
        dump_pipeline(pipeline, tmp_path / name)
        assert load_pipeline(tmp_path / name)[0] == pipeline


def test_dumped_pipelines_leave_fields_at_their_defaults_out(tmp_path):
    pipeline = Pipeline(stages=[PipelineStage(name="s", command="true")])
    dump_pipeline(pipeline, tmp_path / "p.json")
    data = json.loads((tmp_path / "p.json").read_text())
    assert data == {"format_version": "1.0", "stages": [{"name": "s", "command": "true"}]}


def test_every_problem_of_a_pipeline_file_is_reported_at_once(tmp_path):
    write_config(tmp_path / "c.json")
    path = write_pipeline(
        tmp_path / "p.json",
        [
            {"name": "prepare", "config_file": "c.json", "command": "true"},
            {"name": "prepare", "command": "true", "config_output": "../out.json"},
            {"name": "bad name", "command": "true"},
            {"name": "agg", "command": "true", "overrides": {"slurm": {"walltime": "soon"}}},
            {"name": "post", "command": "true", "colour": "blue"},
        ],
    )
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    problems = problems_of(exc)
    assert len(problems) >= 5, problems
    text = "\n".join(problems)
    assert "stage 'prepare': give exactly one of config_file and command (got both)" in text
    assert "stage 'prepare': config_output: " in text and "'..'" in text
    assert "stage 'bad name': name: " in text
    assert "stage 'agg': overrides.slurm.walltime: " in text and "'soon'" in text
    assert "stage 'post': unknown field 'colour'" in text
    assert "stage 'prepare': name used by 2 stages" in text
    assert exc.value.file == str(path)


def test_a_stage_with_both_config_file_and_command_is_an_error():
    with pytest.raises(ConfigError) as exc:
        parse_pipeline(
            {"stages": [{"name": "s", "config_file": "c.json", "command": "true"}]},
            check_configs=False,
        )
    assert problems_of(exc) == ["stage 's': give exactly one of config_file and command (got both)"]


def test_a_stage_with_neither_config_file_nor_command_is_an_error():
    with pytest.raises(ConfigError) as exc:
        parse_pipeline({"stages": [{"name": "s"}]})
    assert problems_of(exc) == [
        "stage 's': give exactly one of config_file and command (got neither)"
    ]


def test_a_pipeline_needs_at_least_one_stage():
    with pytest.raises(ConfigError, match="stages: List should have at least 1 item"):
        parse_pipeline({"stages": []})


def test_a_stage_named_like_a_jade_output_dir_is_rejected():
    with pytest.raises(ConfigError, match="'output-stage2' is reserved"):
        parse_pipeline({"stages": [{"name": "output-stage2", "command": "true"}]})


@pytest.mark.parametrize(
    "output, reason",
    [
        ("/abs/config.json", "must be relative to the pipeline run dir"),
        ("a/../../config.json", "must not contain '..'"),
        ("stage/config.yaml", "must end in .json or .toml"),
        ("pipeline.json", "the pipeline's status file"),
    ],
)
def test_a_generated_config_stays_inside_the_run_dir_as_json_or_toml(output, reason):
    stage = {"name": "s", "command": "true", "config_output": output}
    with pytest.raises(ConfigError, match=reason):
        parse_pipeline({"stages": [stage]})


def test_two_generators_writing_the_same_config_is_an_error():
    stages = [
        {"name": "one", "command": "true", "config_output": "c.json"},
        {"name": "two", "command": "true", "config_output": "./c.json"},
    ]
    with pytest.raises(ConfigError) as exc:
        parse_pipeline({"stages": stages})
    assert problems_of(exc) == [
        "stage 'one': config_output 'c.json' is also written by stage 'two'"
    ]


def test_a_pipeline_built_in_python_is_checked_for_repeated_stage_names():
    with pytest.raises(ValueError, match="name used by 2 stages"):
        Pipeline(
            stages=[PipelineStage(name="s", command="a"), PipelineStage(name="s", command="b")]
        )


def test_a_config_file_or_a_jade_pipeline_is_not_parsed_as_our_pipeline():
    with pytest.raises(ConfigError, match="a job configuration"):
        parse_pipeline({"jobs": []})
    with pytest.raises(ConfigError, match="this is a JADE pipeline"):
        parse_pipeline({"stage_num": 1, "stages": []})


def test_an_unsupported_format_version_is_an_error():
    with pytest.raises(ConfigError, match="unsupported format version '2.0'"):
        parse_pipeline({"format_version": "2.0", "stages": [{"name": "s", "command": "true"}]})


# --- static stages' configs ------------------------------------------------------------------


def test_a_static_stage_whose_config_has_a_bad_job_names_the_stage_the_config_and_the_job(
    tmp_path,
):
    config = write_config(
        tmp_path / "c.json", jobs=[{"name": "sim", "command": "true", "blocked_by": ["ghost"]}]
    )
    path = write_pipeline(tmp_path / "p.json", [{"name": "prepare", "config_file": "c.json"}])
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    assert problems_of(exc) == [
        f"stage 'prepare': config {config}: job 'sim': blocked by unknown job 'ghost'"
    ]


def test_a_missing_config_file_is_an_error_naming_the_stage(tmp_path):
    path = write_pipeline(tmp_path / "p.json", [{"name": "prepare", "config_file": "nope.json"}])
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    assert problems_of(exc) == [
        f"stage 'prepare': config file {str(tmp_path / 'nope.json')!r} does not exist"
    ]


def test_configs_are_not_read_when_not_asked(tmp_path):
    path = write_pipeline(tmp_path / "p.json", [{"name": "prepare", "config_file": "nope.json"}])
    pipeline, _ = load_pipeline(path, check_configs=False)
    assert pipeline.stages[0].config_file == "nope.json"


def test_a_static_config_is_relative_to_the_pipeline_file_not_the_working_directory(
    tmp_path, monkeypatch
):
    (tmp_path / "configs").mkdir()
    write_config(tmp_path / "configs" / "c.json")
    path = write_pipeline(tmp_path / "p.json", [{"name": "s", "config_file": "configs/c.json"}])
    monkeypatch.chdir(tmp_path / "configs")
    assert load_pipeline(path)[0].stages[0].config_file == "configs/c.json"


def test_overrides_with_unknown_or_invalid_fields_are_errors_naming_the_stage():
    stage = {
        "name": "sims",
        "command": "true",
        "overrides": {
            "slurm": {"partitoin": "debug", "nodes": 0},
            "batching": {"per_node_batch_size": "many"},
            "max_concurrent_batches": 0,
        },
    }
    with pytest.raises(ConfigError) as exc:
        parse_pipeline({"stages": [stage]})
    text = "\n".join(problems_of(exc))
    assert "stage 'sims': overrides.slurm: unknown field 'partitoin'" in text
    assert "stage 'sims': overrides.slurm.nodes: Input should be greater than or equal to 1" in text
    assert "stage 'sims': overrides.batching.per_node_batch_size: " in text
    assert "stage 'sims': overrides.max_concurrent_batches: " in text


def test_a_walltime_override_shorter_than_a_job_estimate_is_an_error_naming_the_stage(tmp_path):
    config = write_config(tmp_path / "c.json")
    stage = {
        "name": "sims",
        "config_file": "c.json",
        "overrides": {"slurm": {"walltime": "15:00"}},
    }
    path = write_pipeline(tmp_path / "p.json", [stage])
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    assert problems_of(exc) == [
        f"stage 'sims': config {config} with the stage's overrides: job 'b': "
        "estimated_run_minutes=20 is longer than group 'cpu' walltime 15:00"
    ]


# --- apply_stage_overrides ---------------------------------------------------------------------


def test_overrides_are_set_on_every_submission_group_and_the_rest_is_kept():
    config = JobConfiguration.model_validate(
        {
            "jobs": [
                {"name": "a", "command": "true", "submission_group": "cpu"},
                {"name": "b", "command": "true", "submission_group": "gpu"},
            ],
            "submission_groups": [
                {"name": "cpu", "slurm": {"account": "old", "mem": "4G"}},
                {"name": "gpu", "slurm": {"gres": "gpu:1"}, "batching": {"num_processes": 2}},
            ],
        }
    )
    overrides = StageOverrides.model_validate(
        {
            "slurm": {"account": "new", "walltime": "2:00:00"},
            "batching": {"per_node_batch_size": 5},
            "max_concurrent_batches": 3,
        }
    )
    new = apply_stage_overrides(config, overrides, stage="sims")
    cpu, gpu = new.group("cpu"), new.group("gpu")
    assert (cpu.slurm.account, cpu.slurm.mem, cpu.slurm.walltime) == ("new", "4G", "2:00:00")
    assert (gpu.slurm.account, gpu.slurm.gres, gpu.batching.num_processes) == ("new", "gpu:1", 2)
    assert {cpu.batching.per_node_batch_size, gpu.batching.per_node_batch_size} == {5}
    assert {cpu.max_concurrent_batches, gpu.max_concurrent_batches} == {3}
    assert config.group("cpu").slurm.account == "old"  # the input is left alone


def test_a_config_without_groups_gets_the_default_group_with_the_overrides():
    config = JobConfiguration.model_validate({"jobs": [{"name": "a", "command": "true"}]})
    overrides = StageOverrides.model_validate({"slurm": {"partition": "debug"}})
    new = apply_stage_overrides(config, overrides)
    assert [g.name for g in new.submission_groups] == ["default"]
    assert new.group("default").slurm.partition == "debug"
    assert new.jobs[0].submission_group == "default"


def test_no_overrides_leave_the_config_as_it_is():
    config = JobConfiguration.model_validate({"jobs": [{"name": "a", "command": "true"}]})
    assert apply_stage_overrides(config, StageOverrides()) is config


def test_an_override_that_breaks_a_group_or_a_job_is_an_error_naming_the_stage(tmp_path):
    config = load_config(write_config(tmp_path / "c.json"))
    too_short = StageOverrides.model_validate({"slurm": {"walltime": "5"}})
    with pytest.raises(ConfigError) as exc:
        apply_stage_overrides(config, too_short, stage="sims")
    assert problems_of(exc)[0].startswith("stage 'sims' with the stage's overrides: job 'a': ")
    time_based = StageOverrides.model_validate({"batching": {"time_based_batching": True}})
    with pytest.raises(ConfigError) as exc:
        apply_stage_overrides(config, time_based, stage="sims")
    assert problems_of(exc) == [
        "stage 'sims': overrides of group 'cpu': batching: time_based_batching needs "
        "num_processes (capacity is walltime x it)"
    ]


# --- files and their kinds ---------------------------------------------------------------------


def test_pipeline_files_are_told_from_configs_cheaply_and_without_raising(tmp_path):
    config = write_config(tmp_path / "c.json")
    pipeline = write_pipeline(tmp_path / "p.json", [{"name": "s", "command": "true"}])
    (tmp_path / "p.toml").write_text('[[stages]]\nname = "s"\ncommand = "true"\n')
    (tmp_path / "broken.json").write_text("{ stages")
    assert is_pipeline_file(pipeline) and is_pipeline_file(tmp_path / "p.toml")
    assert not is_pipeline_file(config)
    assert not is_pipeline_file(tmp_path / "broken.json")
    assert not is_pipeline_file(tmp_path / "missing.json")
    assert not is_pipeline_file(tmp_path)
    assert is_pipeline_data({"stages": []}) and not is_pipeline_data({"stages": [], "jobs": []})


def test_json_is_read_under_any_name_and_syntax_errors_say_where(tmp_path):
    (tmp_path / "p.toml").write_text('{"stages": [{"name": "s", "command": "true"}]}')
    assert read_pipeline_data(tmp_path / "p.toml")["stages"][0]["name"] == "s"
    (tmp_path / "bad.json").write_text('{"stages": [}')
    with pytest.raises(JobForgeError, match="invalid JSON at line 1"):
        load_pipeline(tmp_path / "bad.json")
    (tmp_path / "bad.toml").write_text("stages = [")
    with pytest.raises(JobForgeError, match="invalid TOML"):
        load_pipeline(tmp_path / "bad.toml")
    with pytest.raises(JobForgeError, match="cannot read"):
        load_pipeline(tmp_path / "missing.json")


def test_the_json_schema_names_the_keys_overrides_allow():
    schema = pipeline_json_schema()
    assert schema["title"] == "airflow-jobforge pipeline" and "$schema" in schema
    defs = schema["$defs"]
    assert {"account", "partition", "walltime", "gres", "extra"} <= set(
        defs["SlurmOverrides"]["properties"]
    )
    assert {"per_node_batch_size", "num_processes"} <= set(defs["BatchingOverrides"]["properties"])
    assert defs["SlurmOverrides"]["additionalProperties"] is False
    for model in defs.values():
        for name, field in model["properties"].items():
            assert field.get("description"), f"{model['title']}.{name} has no description"


# --- stage configs -----------------------------------------------------------------------------


@needs_jade
def test_a_jade_config_a_generator_writes_is_imported_on_the_fly(tmp_path):
    (tmp_path / "cmds.txt").write_text("echo one\necho two\n")
    jade(tmp_path, "config", "create", "cmds.txt", "-c", "config.json")
    config, notes = load_stage_config(tmp_path / "config.json", stage="stage2")
    assert [(j.name, j.command) for j in config.jobs] == [("1", "echo one"), ("2", "echo two")]
    assert notes == []


def test_our_config_is_loaded_as_it_is(tmp_path):
    config, notes = load_stage_config(write_config(tmp_path / "c.toml.json"), stage="s")
    assert [j.name for j in config.jobs] == ["a", "b"] and notes == []


def test_stage_config_errors_name_the_stage(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"jobs": [{"name": "x", "command": " "}]}))
    with pytest.raises(ConfigError) as exc:
        load_stage_config(path, stage="agg")
    assert problems_of(exc) == [f"stage 'agg': config {path}: job 'x': command: command is empty"]
    with pytest.raises(JobForgeError, match="stage 'agg': cannot read"):
        load_stage_config(tmp_path / "none.json", stage="agg")


# --- JADE pipelines ----------------------------------------------------------------------------


@needs_jade
def test_a_jade_pipeline_of_auto_config_commands_imports_from_json_under_a_toml_name(tmp_path):
    jade_hpc_config(tmp_path, "-q", "high", "-m", "16G")
    jade(
        tmp_path,
        "pipeline",
        "create",
        "-a",
        "bash gen.sh",
        "-a",
        "python gen2.py 'a b'",
        "-b",
        "7",
        "-q",
        "4",
        "-c",
        "pipeline.toml",
    )
    assert (tmp_path / "pipeline.toml").read_text().lstrip().startswith("{")
    assert is_pipeline_file(tmp_path / "pipeline.toml")
    pipeline, notes = load_pipeline(tmp_path / "pipeline.toml")
    assert [(s.name, s.command, s.config_output) for s in pipeline.stages] == [
        ("stage1", "bash gen.sh", "config-stage1.json"),
        ("stage2", "python gen2.py 'a b'", "config-stage2.json"),
    ]
    overrides = pipeline.stages[1].overrides
    assert overrides.slurm.model_dump(exclude_none=True) == {
        "account": "myacct",
        "partition": "debug",
        "qos": "high",
        "walltime": "1:00:00",
        "mem": "16G",
    }
    assert overrides.batching.model_dump(exclude_none=True) == {
        "per_node_batch_size": 7,
        "num_processes": 4,
    }
    assert {s.on_failure for s in pipeline.stages} == {"continue"}  # JADE goes on regardless
    assert notes == [
        "submitter_params become overrides of every submission group of the stage's config; "
        "JADE applied them only to a config without submission groups"
    ]


@needs_jade
def test_a_jade_pipeline_of_config_files_imports_with_its_jade_configs(tmp_path):
    (tmp_path / "cmds.txt").write_text("echo hi\n")
    jade(tmp_path, "config", "create", "cmds.txt", "-c", "config1.json")
    jade(tmp_path, "config", "create", "cmds.txt", "-c", "config2.json")
    jade_hpc_config(tmp_path)
    jade(
        tmp_path,
        "pipeline",
        "create",
        "-f",
        "config1.json",
        "-f",
        "config2.json",
        "-n",
        "3",
        "-c",
        "pipeline.json",
    )
    pipeline, _ = load_pipeline(tmp_path / "pipeline.json")
    assert [(s.name, s.config_file) for s in pipeline.stages] == [
        ("stage1", "config1.json"),
        ("stage2", "config2.json"),
    ]
    stage = pipeline.stages[0]
    assert stage.overrides.max_concurrent_batches == 3
    assert stage.overrides.batching.model_dump(exclude_none=True) == {}  # JADE's defaults
    config, _ = load_stage_config(resolve_config_file(tmp_path / "p.json", stage), stage="stage1")
    overridden = apply_stage_overrides(config, stage.overrides, stage="stage1")
    assert overridden.group("default").slurm.account == "myacct"


@needs_jade
def test_jade_values_that_do_not_carry_over_are_noted(tmp_path):
    jade_hpc_config(tmp_path)
    (tmp_path / "image.sif").write_text("")
    jade(
        tmp_path,
        "pipeline",
        "create",
        "-a",
        "bash gen.sh",
        "-c",
        "pipeline.json",
        "--no-reports",
        "-p",
        "30",
        "-S",
        "-C",
        "image.sif",
    )
    data = json.loads((tmp_path / "pipeline.json").read_text())
    # what `jade pipeline submit` leaves in its copy of the file
    data.update(path="/scratch/out", stage_num=2, is_complete=True)
    data["stages"][0].update(path="/scratch/out/output-stage1", return_code=1)
    (tmp_path / "pipeline.json").write_text(json.dumps(data))
    pipeline, notes = load_pipeline(tmp_path / "pipeline.json")
    text = "\n".join(notes)
    for needle in [
        "stage 'stage1': generate_reports = False is not carried over",
        "stage 'stage1': poll_interval = 30.0 is not carried over",
        "stage 'stage1': singularity_params (container 'image.sif') is not carried over",
        "stage 'stage1': return_code = 1 (JADE's run state) is not carried over",
        "stage 'stage1': path = '/scratch/out/output-stage1'",
        "top-level is_complete = True",
        "top-level stage_num = 2",
    ]:
        assert needle in text, text
    assert pipeline.stages[0].command == "bash gen.sh"


@needs_jade
def test_a_jade_pipeline_whose_config_file_is_missing_is_an_error_naming_the_stage(tmp_path):
    (tmp_path / "cmds.txt").write_text("echo hi\n")
    jade(tmp_path, "config", "create", "cmds.txt", "-c", "config1.json")
    jade_hpc_config(tmp_path)
    jade(tmp_path, "pipeline", "create", "-f", "config1.json", "-c", "pipeline.json")
    (tmp_path / "config1.json").unlink()
    with pytest.raises(ConfigError, match="stage 'stage1': config file .*config1.json"):
        load_pipeline(tmp_path / "pipeline.json")
