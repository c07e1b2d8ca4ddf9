from __future__ import annotations

import json

import pytest

from airflow_jobforge.cli.main import main
from airflow_jobforge.config import load_config


@pytest.fixture
def commands(tmp_path):
    path = tmp_path / "commands.txt"
    path.write_text(
        "# a comment\necho one\n\n   \necho two\n  # indented comment\necho three\necho four\n"
    )
    return path


def test_config_create_skips_blank_lines_and_comments(tmp_path, commands):
    out = tmp_path / "c.json"
    assert main(["config", "create", str(commands), "-c", str(out)]) == 0
    config = load_config(out)
    assert [(j.name, j.command) for j in config.jobs] == [
        ("1", "echo one"),
        ("2", "echo two"),
        ("3", "echo three"),
        ("4", "echo four"),
    ]


def test_config_create_options(tmp_path, commands):
    out = tmp_path / "c.toml"
    assert (
        main(
            [
                "config",
                "create",
                str(commands),
                "-c",
                str(out),
                "--group",
                "cpu",
                "--minutes-per-job",
                "2.5",
                "--cancel-on-blocking-job-failure",
                "--append-output-dir",
                "/scratch/out",
            ]
        )
        == 0
    )
    job = load_config(out).jobs[0]
    assert (
        job.submission_group,
        job.estimated_run_minutes,
        job.cancel_on_blocking_job_failure,
        job.command,
    ) == ("cpu", 2.5, True, "echo one /scratch/out")


def test_config_create_shuffle_is_reproducible_with_a_seed(tmp_path, commands):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    main(["config", "create", str(commands), "-c", str(a), "--shuffle", "--seed", "3"])
    main(["config", "create", str(commands), "-c", str(b), "--shuffle", "--seed", "3"])
    cmds = [j.command for j in load_config(a).jobs]
    assert cmds == [j.command for j in load_config(b).jobs]
    assert sorted(cmds) == sorted(["echo one", "echo two", "echo three", "echo four"])


@pytest.fixture
def config_file(tmp_path, commands):
    out = tmp_path / "c.json"
    main(["config", "create", str(commands), "-c", str(out)])
    return out


def test_filter_by_index_ranges(config_file, tmp_path):
    out = tmp_path / "f.json"
    assert main(["config", "filter", str(config_file), "0", "2-3", "-o", str(out)]) == 0
    assert [j.name for j in load_config(out).jobs] == ["1", "3", "4"]


def test_filter_by_field_value_glob(config_file, tmp_path):
    out = tmp_path / "f.json"
    assert (
        main(["config", "filter", str(config_file), "-f", "command=echo t*", "-o", str(out)]) == 0
    )
    assert [j.name for j in load_config(out).jobs] == ["2", "3"]


def test_filter_drops_references_to_removed_blockers(config_file, tmp_path):
    main(["config", "assign-blocked-by", str(config_file), "2", "1"])
    out = tmp_path / "f.json"
    assert main(["config", "filter", str(config_file), "1", "-o", str(out)]) == 0
    assert load_config(out).jobs[0].blocked_by == ()


def test_filter_errors_exit_2(config_file, capsys):
    assert main(["config", "filter", str(config_file), "9"]) == 2
    assert main(["config", "filter", str(config_file), "-f", "colour=red"]) == 2
    assert "no field 'colour'" in capsys.readouterr().err


def test_assign_blocked_by_names_or_all_other_jobs(config_file):
    assert main(["config", "assign-blocked-by", str(config_file), "4", "1", "2"]) == 0
    assert load_config(config_file).jobs[3].blocked_by == ("1", "2")
    assert main(["config", "assign-blocked-by", str(config_file), "3"]) == 0
    assert load_config(config_file).jobs[2].blocked_by == ("1", "2", "4")


def test_assign_blocked_by_refuses_a_cycle(config_file, capsys):
    main(["config", "assign-blocked-by", str(config_file), "2", "1"])
    assert main(["config", "assign-blocked-by", str(config_file), "1", "2"]) == 2
    assert "dependency cycle" in capsys.readouterr().err
    assert load_config(config_file).jobs[0].blocked_by == ()


def test_add_group_with_slurm_params_and_moved_jobs(config_file):
    assert (
        main(
            [
                "config",
                "add-group",
                str(config_file),
                "gpu",
                "--partition",
                "gpu",
                "--gres",
                "gpu:a100:1",
                "--walltime",
                "2:00:00",
                "--nodes",
                "1",
                "--per-node-batch-size",
                "5",
                "--num-processes",
                "2",
                "--sbatch-option=--exclusive",
                "--jobs",
                "1",
                "2",
            ]
        )
        == 0
    )
    config = load_config(config_file)
    gpu = config.group("gpu")
    assert (gpu.slurm.partition, gpu.slurm.gres, gpu.slurm.extra) == (
        "gpu",
        "gpu:a100:1",
        ("--exclusive",),
    )
    assert [j.submission_group for j in config.jobs] == ["gpu", "gpu", "default", "default"]


def test_add_group_with_a_bad_value_exits_2(config_file, capsys):
    assert main(["config", "add-group", str(config_file), "x", "--partition", "a;id"]) == 2
    assert "partition" in capsys.readouterr().err


def test_show_prints_a_table(config_file, capsys):
    assert main(["config", "show", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert "echo three" in out and "4 jobs in 1 submission group(s): default" in out


def test_schema_is_json_schema_editors_can_use(capsys):
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    assert {"jobs", "submission_groups", "setup_command"} <= set(schema["properties"])
    assert "Job" in schema["$defs"] and "SlurmParams" in schema["$defs"]


def test_auto_config_with_the_generic_command_extension(tmp_path, commands):
    out = tmp_path / "auto.json"
    assert main(["auto-config", "generic_command", str(commands), "-c", str(out)]) == 0
    assert len(load_config(out).jobs) == 4


def test_plan_and_run_locally(config_file, tmp_path, capsys):
    assert main(["plan", str(config_file)]) == 0
    assert "default-0000: 4 jobs" in capsys.readouterr().out
    assert main(["run", str(config_file), "--no-airflow", "--output", str(tmp_path / "out")]) == 0
    assert "4 jobs: 4 successful, 0 failed, 0 canceled, 0 missing" in capsys.readouterr().out


def test_help_exists_for_every_command(capsys):
    for argv in (
        ["--help"],
        ["config", "--help"],
        ["config", "create", "--help"],
        ["extensions", "--help"],
        ["auto-config", "--help"],
        ["run", "--help"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
    assert "usage" in capsys.readouterr().out
