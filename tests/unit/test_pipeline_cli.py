"""`jobforge pipeline create/show/validate/import-jade/schema`: files written, tables printed,
every user error one message and exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_jobforge.cli.main import main
from airflow_jobforge.config import load_pipeline

JADE = Path(sys.executable).parent / "jade"
# Under CI=true the JADE tests run or fail, never skip: the test extra installs nrel-jade.
needs_jade = pytest.mark.skipif(
    not JADE.exists() and os.environ.get("CI") != "true",
    reason="nrel-jade (test extra) not installed",
)


def write_config(path: Path, estimate: float = 10) -> Path:
    jobs = [{"name": "a", "command": "echo a", "estimated_run_minutes": estimate}]
    path.write_text(json.dumps({"jobs": jobs}))
    return path


def jade(cwd: Path, *args: str) -> None:
    subprocess.run([str(JADE), *args], cwd=cwd, check=True, capture_output=True, text=True)


def assert_user_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    return err


def test_create_keeps_the_order_of_mixed_config_and_auto_config_stages(tmp_path, capsys):
    write_config(tmp_path / "prep.json")
    write_config(tmp_path / "post.json")
    out = tmp_path / "p.json"
    rc = main(
        [
            "pipeline",
            "create",
            "--config",
            str(tmp_path / "prep.json"),
            "--name",
            "prepare",
            "--auto-config",
            "python gen.py --from prepare",
            "--config",
            str(tmp_path / "post.json"),
            "--partition",
            "short",
            "--walltime",
            "2:00:00",
            "--per-node-batch-size",
            "10",
            "-o",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    pipeline, _ = load_pipeline(out)
    assert [(s.name, s.config_file, s.command) for s in pipeline.stages] == [
        ("prepare", "prep.json", None),
        ("stage2", None, "python gen.py --from prepare"),
        ("stage3", "post.json", None),
    ]
    for stage in pipeline.stages:
        assert stage.overrides.slurm.partition == "short"
        assert stage.overrides.slurm.walltime == "2:00:00"
        assert stage.overrides.batching.per_node_batch_size == 10
    assert "Created pipeline with 3 stage(s)" in capsys.readouterr().out


def test_create_writes_toml_and_config_paths_outside_the_pipeline_dir_absolute(
    tmp_path, monkeypatch
):
    config = write_config(tmp_path / "c.json")
    (tmp_path / "pipelines").mkdir()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "pipelines" / "p.toml"
    assert main(["pipeline", "create", "--config", "c.json", "-o", str(out)]) == 0
    assert 'config_file = "' + str(config) + '"' in out.read_text()
    assert load_pipeline(out)[0].stages[0].config_file == str(config)


def test_create_reports_every_problem_and_writes_nothing(tmp_path, capsys):
    write_config(tmp_path / "c.json", estimate=90)
    out = tmp_path / "p.json"
    rc = main(
        [
            "pipeline",
            "create",
            "--config",
            str(tmp_path / "c.json"),
            "--name",
            "bad name",
            "--auto-config",
            "true",
            "--walltime",
            "1:00:00",
            "-o",
            str(out),
        ]
    )
    err = assert_user_error(capsys, rc)
    assert "stage 'bad name': name: " in err
    assert "estimated_run_minutes=90 is longer than group 'default' walltime 1:00:00" in err
    assert not out.exists()


def test_create_without_stages_or_with_a_misplaced_name_is_a_user_error(tmp_path, capsys):
    out = str(tmp_path / "p.json")
    err = assert_user_error(capsys, main(["pipeline", "create", "-o", out]))
    assert "give at least one --config or --auto-config" in err
    err = assert_user_error(
        capsys, main(["pipeline", "create", "--name", "x", "--auto-config", "true", "-o", out])
    )
    assert "--name x: it must follow the stage option it names" in err


def test_show_prints_each_stage_with_its_kind_source_and_overrides(tmp_path, capsys):
    write_config(tmp_path / "c.json")
    path = tmp_path / "p.json"
    stages = [
        {"name": "prepare", "config_file": "c.json", "on_failure": "continue"},
        {
            "name": "sims",
            "command": "bash gen.sh",
            "overrides": {"slurm": {"account": "acct"}, "max_concurrent_batches": 2},
        },
    ]
    path.write_text(json.dumps({"stages": stages}))
    assert main(["pipeline", "show", str(path)]) == 0
    out = capsys.readouterr().out
    lines = [" ".join(line.split()) for line in out.splitlines()]  # columns: any width
    assert lines[:3] == [
        "# name kind config file / command overrides, options on_failure",
        "1 prepare config file c.json continue",
        "2 sims generated bash gen.sh > sims/config.json slurm.account=acct "
        "max_concurrent_batches=2 stop",
    ]
    assert "2 stage(s), 1 generated at run time" in out


def test_validate_reports_ok_files_and_every_problem_of_bad_ones(tmp_path, capsys):
    write_config(tmp_path / "c.json")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"stages": [{"name": "s", "config_file": "c.json"}]}))
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "stages": [
                    {"name": "s", "config_file": "missing.json"},
                    {"name": "s", "command": "true", "overrides": {"slurm": {"cpus": 4}}},
                    {"name": "t"},
                ]
            }
        )
    )
    assert main(["pipeline", "validate", str(good)]) == 0
    assert f"{good}: OK, 1 stage(s), 0 generated at run time" in capsys.readouterr().out
    err = assert_user_error(capsys, main(["pipeline", "validate", str(good), str(bad)]))
    assert f"{bad}: 4 problems in configuration:" in err
    for needle in [
        "stage 's': config file",
        "stage 's': overrides.slurm: unknown field 'cpus'",
        "stage 't': give exactly one of config_file and command (got neither)",
        "stage 's': name used by 2 stages",
    ]:
        assert needle in err


def test_an_unreadable_pipeline_is_one_line_and_exit_code_2(tmp_path, capsys):
    err = assert_user_error(capsys, main(["pipeline", "show", str(tmp_path / "none.json")]))
    assert (
        err.strip() == f"jobforge: {tmp_path / 'none.json'}: cannot read: No such file or directory"
    )


def test_schema_prints_the_pipeline_json_schema(capsys):
    assert main(["pipeline", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "airflow-jobforge pipeline"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "walltime" in schema["$defs"]["SlurmOverrides"]["properties"]


@needs_jade
def test_import_jade_converts_a_real_jade_pipeline_and_prints_what_did_not_carry_over(
    tmp_path, capsys
):
    jade(tmp_path, "config", "hpc", "-a", "myacct", "-p", "debug", "-w", "1:00:00")
    (tmp_path / "cmds.txt").write_text("echo hi\n")
    jade(tmp_path, "config", "create", "cmds.txt", "-c", "config.json")
    jade(tmp_path, "pipeline", "create", "-f", "config.json", "-p", "60", "-c", "pipeline.toml")
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "p.json"
    jade_file = str(tmp_path / "pipeline.toml")
    assert main(["pipeline", "import-jade", jade_file, "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Imported 1 stage(s)" in captured.out
    assert f"{jade_file}: not carried over: stage 'stage1': poll_interval = 60.0" in captured.err
    pipeline, _ = load_pipeline(out)  # the JADE stage config, found from the new place
    assert pipeline.stages[0].config_file == str(tmp_path / "config.json")
    assert pipeline.stages[0].overrides.slurm.account == "myacct"

    assert main(["pipeline", "show", jade_file]) == 0
    shown = capsys.readouterr().out
    assert "stage1" in shown and "Not carried over from JADE:" in shown
    assert "poll_interval = 60.0" in shown


def test_import_jade_of_a_file_that_is_not_a_jade_pipeline_is_a_user_error(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"stages": [{"name": "s", "command": "true"}]}))
    rc = main(["pipeline", "import-jade", str(path), "-o", str(tmp_path / "out.json")])
    assert "not a JADE pipeline" in assert_user_error(capsys, rc)
