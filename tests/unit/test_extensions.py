from __future__ import annotations

import pytest

from airflow_jobforge.cli.main import main
from airflow_jobforge.config import Job
from airflow_jobforge.errors import ExtensionError
from airflow_jobforge.extensions.generic_command import GenericCommandCli, GenericCommandExecution
from airflow_jobforge.extensions.registry import Extension, Registry
from airflow_jobforge.rundir.batches import JobSpec

USER_EXT = Extension(
    name="echo_twice",
    description="test extension",
    parameters_class="airflow_jobforge.config.models:Job",
    execution_class="tests.unit.sample_extension:EchoTwiceExecution",
    cli_class="airflow_jobforge.extensions.generic_command:GenericCommandCli",
)


def test_generic_command_is_built_in_through_the_entry_point():
    registry = Registry()
    assert registry.is_registered("generic_command")
    assert registry.get_extension_class("generic_command", "parameters") is Job
    assert registry.get_extension_class("generic_command", "execution") is GenericCommandExecution
    assert registry.get_extension_class("generic_command", "cli") is GenericCommandCli


def test_register_list_and_unregister_a_user_extension(tmp_path):
    registry = Registry(tmp_path / "r.json")
    registry.register(USER_EXT)
    assert [e.name for e in Registry(tmp_path / "r.json").list_extensions()] == [
        "echo_twice",
        "generic_command",
    ]
    execution = registry.get_extension_class("echo_twice", "execution")
    assert execution.argv(JobSpec("a", "x")) == ["bash", "-c", "x; x"]
    with pytest.raises(ExtensionError, match="already registered"):
        registry.register(USER_EXT)
    registry.unregister("echo_twice")
    assert not registry.is_registered("echo_twice")


def test_a_built_in_can_be_disabled_and_reset_defaults_restores_it(tmp_path):
    registry = Registry(tmp_path / "r.json")
    registry.unregister("generic_command")
    assert not registry.is_registered("generic_command")
    registry.reset_defaults()
    assert registry.is_registered("generic_command")


def test_registering_a_class_that_does_not_import_fails_clearly(tmp_path):
    bad = Extension("bad", "", "no.such.module:X", "a:b", "a:b")
    with pytest.raises(ExtensionError, match="cannot import 'no.such.module:X'"):
        Registry(tmp_path / "r.json").register(bad)
    assert not Registry(tmp_path / "r.json").is_registered("bad")


def test_unknown_extension_is_an_error():
    with pytest.raises(ExtensionError, match="'nope' is not registered"):
        Registry().get("nope")


def test_registry_file_comes_from_jobforge_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("JOBFORGE_REGISTRY", str(tmp_path / "elsewhere.json"))
    Registry().register(USER_EXT)
    assert (tmp_path / "elsewhere.json").exists()


def test_cli_register_list_unregister_reset(capsys):
    assert (
        main(
            [
                "extensions",
                "register",
                "echo_twice",
                "--parameters-class",
                USER_EXT.parameters_class,
                "--execution-class",
                USER_EXT.execution_class,
                "--cli-class",
                USER_EXT.cli_class,
            ]
        )
        == 0
    )
    assert main(["extensions", "list"]) == 0
    assert "echo_twice" in capsys.readouterr().out
    assert main(["extensions", "unregister", "echo_twice"]) == 0
    assert main(["extensions", "unregister", "echo_twice"]) == 2
    assert main(["extensions", "reset-defaults"]) == 0


def test_node_runner_starts_jobs_of_a_user_extension_its_way(tmp_path):
    from airflow_jobforge.node.runner import run_batch
    from airflow_jobforge.rundir.batches import BatchSpec

    Registry().register(USER_EXT)
    spec = BatchSpec(batch="b", jobs=(JobSpec("a", "echo hi", extension="echo_twice"),))
    assert run_batch(spec, tmp_path, 1) == 0
    assert (tmp_path / "job-output" / "a.out").read_text() == "hi\nhi\n"
