from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_jobforge.cli.main import main
from airflow_jobforge.config import load_config, parse_configuration
from airflow_jobforge.errors import ConfigError


def problems_of(data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_configuration(data, file="cfg.json")
    assert info.value.file == "cfg.json"
    return [str(p) for p in info.value.problems]


def job(name, **kw):
    return {"name": name, "command": "true", **kw}


def test_duplicate_job_names_are_reported():
    assert problems_of({"jobs": [job("a"), job("a")]}) == ["job 'a': name used by 2 jobs"]


def test_duplicate_group_names_are_reported():
    probs = problems_of(
        {
            "jobs": [job("a", submission_group="g")],
            "submission_groups": [{"name": "g"}, {"name": "g"}],
        }
    )
    assert "group 'g': defined 2 times" in probs


def test_unknown_blocker_is_reported_with_job_and_blocker():
    assert problems_of({"jobs": [job("a", blocked_by=["nope"])]}) == [
        "job 'a': blocked by unknown job 'nope'"
    ]


def test_job_blocked_by_itself_is_reported():
    assert problems_of({"jobs": [job("a", blocked_by=["a"])]}) == ["job 'a': is blocked by itself"]


def test_dependency_cycle_is_reported_with_its_path():
    probs = problems_of(
        {
            "jobs": [
                job("a", blocked_by=["c"]),
                job("b", blocked_by=["a"]),
                job("c", blocked_by=["b"]),
                job("d", blocked_by=["a"]),
            ]
        }
    )
    assert probs == ["job 'a': dependency cycle: a -> c -> b -> a (each is blocked by the next)"]


def test_two_separate_cycles_are_both_reported():
    probs = problems_of(
        {
            "jobs": [
                job("a", blocked_by=["b"]),
                job("b", blocked_by=["a"]),
                job("x", blocked_by=["y"]),
                job("y", blocked_by=["x"]),
            ]
        }
    )
    assert len(probs) == 2 and all("dependency cycle" in p for p in probs)


def test_a_long_chain_is_not_a_cycle_and_does_not_recurse():
    jobs = [job("j0")] + [job(f"j{i}", blocked_by=[f"j{i - 1}"]) for i in range(1, 20000)]
    assert len(parse_configuration({"jobs": jobs}).jobs) == 20000


def test_unknown_submission_group_is_reported():
    probs = problems_of(
        {"jobs": [job("a", submission_group="gpu")], "submission_groups": [{"name": "cpu"}]}
    )
    assert probs == ["job 'a': unknown submission group 'gpu'"]


def test_job_without_group_among_several_groups_is_reported():
    probs = problems_of(
        {"jobs": [job("a")], "submission_groups": [{"name": "cpu"}, {"name": "gpu"}]}
    )
    assert probs == ["job 'a': has no submission_group and there are several groups"]


def test_estimate_longer_than_group_walltime_is_reported():
    probs = problems_of(
        {
            "jobs": [job("a", estimated_run_minutes=61)],
            "submission_groups": [{"name": "g", "slurm": {"walltime": "1:00:00"}}],
        }
    )
    assert probs == ["job 'a': estimated_run_minutes=61 is longer than group 'g' walltime 1:00:00"]


def test_time_based_batching_job_without_estimate_is_reported():
    probs = problems_of(
        {
            "jobs": [job("a", estimated_run_minutes=1), job("b")],
            "submission_groups": [
                {"name": "g", "batching": {"time_based_batching": True, "num_processes": 2}}
            ],
        }
    )
    assert probs == [
        "job 'b': group 'g' uses time_based_batching, which needs "
        "estimated_run_minutes on every job"
    ]


@pytest.mark.parametrize(
    ("slurm", "needle"),
    [
        ({"walltime": "1h"}, "walltime"),
        ({"mem": "1GB"}, "mem"),
        ({"gres": "gpu:"}, "gres"),
        ({"partition": "a;b"}, "partition"),
    ],
)
def test_malformed_slurm_fields_name_the_group_and_field(slurm, needle):
    probs = problems_of({"jobs": [job("a")], "submission_groups": [{"name": "g", "slurm": slurm}]})
    assert len(probs) == 1 and probs[0].startswith(f"group 'g': slurm.{needle}")


def test_unknown_fields_are_reported_at_every_level():
    probs = problems_of(
        {
            "jobs": [job("a", colour="red")],
            "bogus": 1,
            "submission_groups": [{"name": "default", "slurm": {"walltme": "1"}}],
        }
    )
    assert "job 'a': unknown field 'colour'" in probs
    assert "unknown field 'bogus'" in probs
    assert "group 'default': slurm: unknown field 'walltme'" in probs


def test_wrong_types_are_reported_by_job_name():
    probs = problems_of({"jobs": [job("a", blocked_by="b"), job("b", estimated_run_minutes="x")]})
    assert any(p.startswith("job 'a': blocked_by") for p in probs)
    assert any(p.startswith("job 'b': estimated_run_minutes") for p in probs)


def test_every_problem_of_a_config_is_collected_at_once():
    probs = problems_of(
        {
            "jobs": [
                job("bad name"),
                job("a", blocked_by=["c"]),
                job("c", blocked_by=["a"]),
                job("d", command="", blocked_by=["zz"]),
                job("e", submission_group="nope"),
                job("f", estimated_run_minutes=500),
            ],
            "submission_groups": [{"name": "default", "slurm": {"walltime": "1:00:00"}}],
        }
    )
    text = "\n".join(probs)
    for needle in [
        "'bad name' is not a valid job name",
        "dependency cycle",
        "job 'd': command: command is empty",
        "blocked by unknown job 'zz'",
        "unknown submission group 'nope'",
        "job 'f': estimated_run_minutes=500",
    ]:
        assert needle in text
    assert len(probs) == 6


def test_a_jade_file_given_directly_gets_a_pointer_to_the_importer():
    probs = problems_of({"configuration_class": "GenericCommandConfiguration", "jobs": []})
    assert "import-jade" in probs[0]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_jobforge.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_malformed_json_is_one_line_with_file_and_location_and_exit_2(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"jobs": [\n  {"name": "a",}\n]}')
    result = run_cli("config", "validate", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{path}: invalid JSON at line 2, column 16: "
        "Expecting property name enclosed in double quotes"
    )
    assert "Traceback" not in result.stderr


def test_malformed_toml_is_one_line_with_file_and_location_and_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[jobs]]\nname = "a"\ncommand = \n')
    result = run_cli("config", "show", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert str(path) in result.stderr and "line 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_config_lists_all_problems_and_exits_2_without_traceback(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(
        '{"jobs": [{"name": "a", "command": "x", "blocked_by": ["q"]}, '
        '{"name": "a b", "command": ""}]}'
    )
    assert main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: 3 problems in configuration" in err
    assert "Traceback" not in err


def test_load_config_of_a_valid_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[jobs]]\nname = "a"\ncommand = "true"\n')
    assert load_config(path).jobs[0].name == "a"
