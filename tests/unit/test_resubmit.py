"""`jobforge results resubmit`: a config of a real run's jobs that did not succeed."""

from __future__ import annotations

import json
import shutil

import pytest

from airflow_jobforge.cli.main import main
from airflow_jobforge.config import dump_config, load_config
from airflow_jobforge.config.models import JobConfiguration
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.local.direct import run_locally
from airflow_jobforge.results.resubmit import OverrideError, resubmit_config
from airflow_jobforge.results.show import load_run
from airflow_jobforge.rundir.manifest import MANIFEST

CONFIG = {
    "jobs": [
        {"name": "prepare", "command": "echo preparing", "submission_group": "cpu"},
        {
            "name": "simulate",
            "command": "echo 'ValueError: column x' >&2; exit 3",
            "blocked_by": ["prepare"],
            "submission_group": "big",
        },
        {
            "name": "plot",
            "command": "echo plot",
            "blocked_by": ["simulate", "prepare"],
            "cancel_on_blocking_job_failure": True,
            "submission_group": "cpu",
        },
        {
            "name": "report",
            "command": "echo report",
            "blocked_by": ["plot"],
            "cancel_on_blocking_job_failure": True,
            "submission_group": "cpu",
        },
        {"name": "tidy", "command": "true", "submission_group": "spare"},
    ],
    "submission_groups": [
        {"name": "cpu", "slurm": {"walltime": "1:00:00"}, "batching": {"num_processes": 2}},
        {"name": "big", "slurm": {"walltime": "2:00:00", "mem": "4G", "partition": "long"}},
        {"name": "spare"},
    ],
    "setup_command": "true",
    "node_setup_command": "true",
    "user_data": {"campaign": 7},
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    directory = tmp_path_factory.mktemp("resubmit")
    config_file = directory / "config.json"
    dump_config(JobConfiguration.model_validate(CONFIG), config_file)
    run_locally(
        load_config(config_file),
        directory / "out",
        progress=lambda _: None,
        config_file=config_file,
    )
    return directory


@pytest.fixture
def workdir(pristine, tmp_path):
    """A private copy; the manifest names the copied config, as if the run had been here."""
    copy = shutil.copytree(pristine, tmp_path / "w")
    manifest = json.loads((copy / "out" / MANIFEST).read_text())
    manifest["config_file"] = str(copy / "config.json")
    (copy / "out" / MANIFEST).write_text(json.dumps(manifest))
    return copy


def resubmit(run_dir, *categories: str, overrides=(), config=None):
    run = load_run(run_dir)
    return resubmit_config(
        config or load_config(run.manifest.config_file),
        run.records,
        run.names,
        categories or ("failed", "missing"),
        overrides,
    )


def jobs_of(config) -> dict[str, tuple[str, ...]]:
    return {job.name: job.blocked_by for job in config.jobs}


def test_failed_and_canceled_jobs_keep_only_blockers_resubmitted_with_them(workdir):
    result = resubmit(workdir / "out", "failed", "canceled")
    # prepare succeeded: dropped from simulate and plot; simulate and plot come along.
    assert jobs_of(result.config) == {
        "simulate": (),
        "plot": ("simulate",),
        "report": ("plot",),
    }
    assert result.describe() == "3 jobs: 1 failed, 2 canceled"
    assert result.notes == ()


def test_a_blocker_that_did_not_succeed_and_stays_behind_is_dropped_with_a_note(workdir):
    result = resubmit(workdir / "out", "canceled")
    assert jobs_of(result.config) == {"plot": (), "report": ("plot",)}
    (note,) = result.notes
    assert "'plot'" in note and "simulate" in note and "prepare" not in note


def test_only_groups_with_jobs_left_remain_and_keep_their_params(workdir):
    result = resubmit(workdir / "out", "failed", "canceled")
    groups = result.config.groups_by_name()
    assert set(groups) == {"cpu", "big"}
    assert groups["big"].slurm.partition == "long" and groups["cpu"].batching.num_processes == 2


def test_run_wide_fields_are_kept(workdir):
    config = resubmit(workdir / "out", "failed").config
    assert (config.setup_command, config.node_setup_command, config.user_data) == (
        "true",
        "true",
        {"campaign": 7},
    )


def test_set_overrides_slurm_batching_and_retry_of_a_group(workdir):
    result = resubmit(
        workdir / "out",
        "failed",
        "canceled",
        overrides=[
            "big.slurm.mem=16G",
            "big.slurm.walltime=8:00:00",
            'big.slurm.extra=["--exclusive"]',
            "cpu.batching.per_node_batch_size=10",
            "big.retry.out_of_memory.mem_factor=3",
        ],
    )
    groups = result.config.groups_by_name()
    assert (groups["big"].slurm.mem, groups["big"].slurm.walltime) == ("16G", "8:00:00")
    assert groups["big"].slurm.extra == ("--exclusive",) and groups["big"].slurm.partition == "long"
    assert groups["cpu"].batching.per_node_batch_size == 10
    assert groups["big"].retry.out_of_memory.mem_factor == 3.0


def test_every_bad_override_is_listed_at_once(workdir):
    with pytest.raises(OverrideError) as info:
        resubmit(
            workdir / "out",
            "failed",
            overrides=[
                "big.slurm.mem=lots",
                "big.slurm.colour=red",
                "nosuch.slurm.mem=1G",
                "big.paint.x=1",
                "big.slurm.walltime",
                "big.batching.per_node_batch_size=0",
            ],
        )
    text = str(info.value)
    assert "6 problems in --set" in text
    for expected in (
        "--set big.slurm.mem=lots: slurm.mem:",
        "--set big.slurm.colour=red: slurm.colour: unknown key",
        "no submission group 'nosuch'",
        "unknown section 'paint'",
        "--set big.slurm.walltime: expected GROUP.SECTION.KEY=VALUE",
        "--set big.batching.per_node_batch_size=0: batching.per_node_batch_size:",
    ):
        assert expected in text


def test_an_override_of_a_group_without_jobs_left_is_a_note(workdir):
    result = resubmit(workdir / "out", "failed", overrides=["spare.slurm.mem=1G"])
    assert result.notes == ("--set spare.slurm.mem=1G: group 'spare' has no job left",)


def test_a_job_of_the_run_missing_from_the_config_is_an_error(workdir):
    data = json.loads((workdir / "config.json").read_text())
    data["jobs"] = [j for j in data["jobs"] if j["name"] != "simulate"]
    data["jobs"][1]["blocked_by"] = ["prepare"]
    with pytest.raises(JobForgeError, match="not in the configuration.*simulate"):
        resubmit(workdir / "out", "failed", config=JobConfiguration.model_validate(data))


def test_the_cli_writes_the_new_config_and_says_what_it_holds(workdir, capsys):
    new = workdir / "new.json"
    argv = ["results", "resubmit", str(workdir / "out"), "--failed", "--canceled", "-c", str(new)]
    assert main([*argv, "--set", "big.slurm.mem=16G"]) == 0
    assert capsys.readouterr().out == f"3 jobs: 1 failed, 2 canceled -> {new}\n"
    config = load_config(new)
    assert [j.name for j in config.jobs] == ["simulate", "plot", "report"]
    assert config.group("big").slurm.mem == "16G"


def test_the_default_is_failed_and_missing_jobs(workdir, capsys):
    (workdir / "out" / "results" / "spare-0000.jsonl").unlink()  # tidy left no record
    new = workdir / "new.json"
    assert main(["results", "resubmit", str(workdir / "out"), "-c", str(new)]) == 0
    assert capsys.readouterr().out == f"2 jobs: 1 failed, 1 missing -> {new}\n"
    assert [j.name for j in load_config(new).jobs] == ["simulate", "tidy"]


def test_bad_overrides_exit_2_and_write_nothing(workdir, capsys):
    new = workdir / "new.json"
    argv = ["results", "resubmit", str(workdir / "out"), "-c", str(new)]
    assert main([*argv, "--set", "big.slurm.mem=lots", "--set", "x.slurm.mem=1G"]) == 2
    assert "2 problems in --set" in capsys.readouterr().err and not new.exists()


def test_nothing_to_resubmit_writes_nothing_and_exits_0(workdir, capsys):
    new = workdir / "new.json"
    assert main(["results", "resubmit", str(workdir / "out"), "--missing", "-c", str(new)]) == 0
    assert "Nothing to resubmit" in capsys.readouterr().out and not new.exists()


def test_without_a_config_file_in_the_manifest_config_is_required(workdir, capsys):
    (workdir / "out" / MANIFEST).unlink()
    new = workdir / "new.json"
    argv = ["results", "resubmit", str(workdir / "out"), "-c", str(new)]
    assert main(argv) == 2
    assert "give the original one with --config" in capsys.readouterr().err
    assert main([*argv, "--config", str(workdir / "config.json")]) == 0
    assert [j.name for j in load_config(new).jobs] == ["simulate"]
