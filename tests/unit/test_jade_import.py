"""The fixtures are real `jade config create` / `add-submission` output (nrel-jade 0.12.0)."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_jobforge.cli.main import main
from airflow_jobforge.config import load_config
from airflow_jobforge.config.jade import import_jade

FIXTURES = Path(__file__).parent.parent / "fixtures" / "jade"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_jobs_without_name_take_their_job_id_and_blockers_follow():
    config, _ = import_jade(load("two_groups_v0.2.0.json"))
    assert [j.name for j in config.jobs] == ["1", "2", "3", "4"]
    assert config.jobs[3].blocked_by == ("2", "1")
    assert config.jobs[0].estimated_run_minutes == 5
    assert config.jobs[2].command == 'bash -c "exit 3"'


def test_submission_groups_map_slurm_and_batching_fields():
    config, _ = import_jade(load("two_groups_v0.2.0.json"))
    cpu = config.group("cpu")
    assert (
        cpu.slurm.account,
        cpu.slurm.partition,
        cpu.slurm.qos,
        cpu.slurm.walltime,
        cpu.slurm.mem,
        cpu.slurm.tmp,
        cpu.slurm.nodes,
    ) == ("myacct", "debug", "high", "01:00:00", "10G", "100G", 1)
    assert (
        cpu.batching.per_node_batch_size,
        cpu.batching.num_processes,
        cpu.batching.time_based_batching,
        cpu.batching.try_add_blocked_jobs,
    ) == (2, 2, False, True)
    gpu = config.group("gpu")
    assert gpu.slurm.walltime == "2-00:00:00"
    assert gpu.batching.time_based_batching and gpu.batching.num_processes == 4


def test_the_default_group_jade_creates_at_submit_time_is_created_and_reported():
    config, notes = import_jade(load("two_groups_v0.2.0.json"))
    assert {j.submission_group for j in config.jobs} == {"default"}
    assert any("group 'default' created" in n for n in notes)


def test_a_plain_jade_config_imports_without_notes():
    config, notes = import_jade(load("simple_v0.2.0.json"))
    assert len(config.jobs) == 4 and notes == []


def test_fields_that_do_not_carry_over_are_reported_not_dropped_silently():
    data = load("two_groups_v0.2.0.json")
    params = data["submission_groups"][0]["submitter_params"]
    params["poll_interval"] = 30
    params["hpc_config"]["job_prefix"] = "sim"
    params["hpc_config"]["hpc"]["extra_thing"] = "x"
    data["jobs"][0]["append_output_dir"] = True
    data["batch_post_process_config"] = {"module": "m"}
    _, notes = import_jade(data)
    text = "\n".join(notes)
    for needle in [
        "poll_interval = 30",
        "job_prefix",
        "'extra_thing'",
        "append_output_dir",
        "batch_post_process_config",
    ]:
        assert needle in text


def test_jade_max_nodes_becomes_the_groups_max_concurrent_batches():
    data = load("two_groups_v0.2.0.json")
    data["submission_groups"][0]["submitter_params"]["max_nodes"] = 8
    config, notes = import_jade(data)
    group = config.group(data["submission_groups"][0]["name"])
    assert group.max_concurrent_batches == 8
    assert not any("max_nodes" in n for n in notes)


def test_names_unusable_here_are_renamed_with_references_and_a_note():
    data = load("simple_v0.2.0.json")
    data["jobs"][0]["name"] = "my job/1"
    data["jobs"][1]["blocked_by"] = ["my job/1"]
    config, notes = import_jade(data)
    assert config.jobs[0].name == "my_job_1"
    assert config.jobs[1].blocked_by == ("my_job_1",)
    assert any("renamed" in n for n in notes)


def test_setup_commands_user_data_and_post_process_carry_over():
    data = load("simple_v0.2.0.json")
    data.update(
        setup_command="s",
        teardown_command="t",
        node_setup_command="ns",
        node_teardown_command="nt",
        user_data={"k": 1},
        job_post_process_config={"module": "a.b", "class": "C", "data": {}},
    )
    config, _ = import_jade(data)
    assert (
        config.setup_command,
        config.teardown_command,
        config.node_setup_command,
        config.node_teardown_command,
    ) == ("s", "t", "ns", "nt")
    assert config.user_data == {"k": 1}
    assert config.job_post_process_config.class_name == "C"


def test_singularity_container_becomes_container_image():
    data = load("two_groups_v0.2.0.json")
    data["submission_groups"][0]["submitter_params"]["singularity_params"] = {
        "enabled": True,
        "container": "/p/app.sif",
        "load_command": "module load singularity",
    }
    config, notes = import_jade(data)
    assert config.group("cpu").container.image == "/p/app.sif"
    assert any("load_command" in n for n in notes)


def test_cli_import_jade_writes_a_valid_config_and_prints_notes(tmp_path, capsys):
    out = tmp_path / "out.json"
    assert (
        main(["config", "import-jade", str(FIXTURES / "two_groups_v0.2.0.json"), "-o", str(out)])
        == 0
    )
    assert len(load_config(out).jobs) == 4
    assert "not carried over" in capsys.readouterr().err


def test_a_config_freshly_written_by_installed_jade_imports(tmp_path):
    """nrel-jade is a test dependency: this checks the importer against today's JADE output."""
    import subprocess
    import sys

    jade = Path(sys.executable).parent / "jade"
    commands = tmp_path / "commands.txt"
    commands.write_text("echo a\necho b\n")
    subprocess.run(
        [str(jade), "config", "create", str(commands), "-c", str(tmp_path / "jade.json")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            str(jade),
            "config",
            "assign-blocked-by",
            str(tmp_path / "jade.json"),
            "1",
            "0",
            "-o",
            str(tmp_path / "jade.json"),
        ],
        check=True,
        capture_output=True,
    )
    config, _ = import_jade(json.loads((tmp_path / "jade.json").read_text()))
    assert [(j.name, j.blocked_by) for j in config.jobs] == [("1", ()), ("2", ("1",))]
