"""A pipeline stage at run time (`planning.stages`): where it writes, what its generator
sees, the message a failed generator gives, and the batches a generated stage maps over."""

from __future__ import annotations

import os
import subprocess

import pytest

from airflow_jobforge.config import parse_configuration
from airflow_jobforge.planning.stages import (
    LAST_LINES_CHARS,
    StageRun,
    generator_failure,
    merged_output,
    planned_batches,
)


def third_stage(pipeline_dir: str, **kwargs) -> StageRun:
    return StageRun(pipeline_dir, "report", 3, ("simulate", "aggregate"), **kwargs)


def run_generator(run: StageRun, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        run.generator_argv(command), capture_output=True, text=True, timeout=60, check=False
    )


# --- where a stage writes and what its generator sees ------------------------------------------


def test_a_stage_writes_under_its_name_and_its_config_defaults_to_config_json():
    run = third_stage("/runs/r1")
    assert run.stage_dir == "/runs/r1/report"
    assert run.config_path == "/runs/r1/report/config.json"
    assert run.previous_dir == "/runs/r1/aggregate"


def test_config_output_is_relative_to_the_pipeline_run_dir():
    run = third_stage("/runs/r1", config_output="configs/./stage3.toml")
    assert run.config_path == "/runs/r1/configs/stage3.toml"


def test_a_jade_stage_runs_in_the_pipeline_file_directory_and_writes_there():
    run = StageRun(
        "/runs/r1", "stage2", 2, ("stage1",), "config-stage2.json", "/home/u/p", "/home/u/p/p.toml"
    )
    assert run.workdir == "/home/u/p"
    assert run.config_path == "/home/u/p/config-stage2.json"
    assert run.environment()["JOBFORGE_PIPELINE_FILE"] == "/home/u/p/p.toml"


def test_the_first_stage_has_no_previous_dir():
    assert StageRun("/runs/r1", "simulate", 1).previous_dir == ""


def test_the_generator_sees_our_variables_and_jades():
    assert third_stage("/runs/r1").environment() == {
        "JOBFORGE_PIPELINE_OUTPUT_DIR": "/runs/r1",
        "JOBFORGE_STAGE_NUM": "3",
        "JOBFORGE_STAGE_NAME": "report",
        "JOBFORGE_STAGE_DIR": "/runs/r1/report",
        "JOBFORGE_STAGE_CONFIG": "/runs/r1/report/config.json",
        "JOBFORGE_PREVIOUS_STAGE_DIR": "/runs/r1/aggregate",
        "JADE_PIPELINE_OUTPUT_DIR": "/runs/r1",
        "JADE_PIPELINE_STAGE_ID": "3",
        "JADE_PIPELINE_STATUS_FILE": "/runs/r1/pipeline.json",
        "JOBFORGE_PIPELINE_FILE": "",
    }


def test_jade_output_stage_links_name_every_stage_up_to_this_one_by_relative_targets():
    assert third_stage("/runs/r1").links() == [
        ("simulate", "output-stage1"),
        ("aggregate", "output-stage2"),
        ("report", "output-stage3"),
    ]


def test_the_command_is_one_argv_element_never_spliced_into_the_wrapper_script():
    command = "echo \"it's $(date)\" '; rm -rf /' `id`"
    argv = third_stage("/runs/r1").generator_argv(command)
    assert argv.count(command) == 1
    wrapper = argv[argv.index("-c") + 1]
    assert command not in wrapper and "/runs/r1" not in wrapper
    assert argv[argv.index(command) + 1 :] == [
        "/runs/r1",  # where it runs
        "simulate",
        "output-stage1",
        "aggregate",
        "output-stage2",
        "report",
        "output-stage3",
    ]


def test_the_generator_runs_in_the_pipeline_run_dir_with_dirs_links_and_its_environment(
    tmp_path,
):
    pipeline_dir = tmp_path / "run 1"  # a space: every path is an argument, never spliced
    (pipeline_dir / "simulate").mkdir(parents=True)
    run = third_stage(str(pipeline_dir))
    command = (
        "printf '%s' \"$JOBFORGE_STAGE_NUM\" > marker; "
        'printf \'%s\\n\' "$(pwd)" "$JOBFORGE_STAGE_NAME" "$JADE_PIPELINE_STAGE_ID" '
        '"$JOBFORGE_PREVIOUS_STAGE_DIR" > "$JOBFORGE_STAGE_DIR/seen.txt"; '
        'echo \'{"jobs": []}\' > "$JOBFORGE_STAGE_CONFIG"; '
        'echo "it\'s \\"quoted\\" $((6 * 7))"'
    )
    result = run_generator(run, command)
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'it\'s "quoted" 42\n'
    assert (pipeline_dir / "marker").read_text() == "3"
    seen = (pipeline_dir / "report" / "seen.txt").read_text().splitlines()
    assert seen == [str(pipeline_dir), "report", "3", str(pipeline_dir / "aggregate")]
    assert (pipeline_dir / "report" / "config.json").read_text() == '{"jobs": []}\n'
    for number, stage in enumerate(("simulate", "aggregate", "report"), 1):
        link = pipeline_dir / f"output-stage{number}"
        assert os.readlink(link) == stage  # relative: the run dir may be moved
    assert (pipeline_dir / "output-stage1").resolve() == (pipeline_dir / "simulate").resolve()


def test_the_generator_makes_the_dir_of_its_config_output(tmp_path):
    run = third_stage(str(tmp_path), config_output="configs/stage3.json")
    result = run_generator(run, 'echo "{}" > "$JOBFORGE_STAGE_CONFIG"')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "configs" / "stage3.json").is_file()
    assert (tmp_path / "report").is_dir()


def test_a_config_left_by_an_earlier_try_is_removed_before_the_generator_runs(tmp_path):
    run = third_stage(str(tmp_path))
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "config.json").write_text('{"jobs": "stale"}')
    result = run_generator(run, 'test ! -e "$JOBFORGE_STAGE_CONFIG" && echo fresh')
    assert (result.returncode, result.stdout) == (0, "fresh\n")


def test_the_generator_exit_code_is_the_wrappers(tmp_path):
    result = run_generator(third_stage(str(tmp_path)), "echo half; exit 7")
    assert (result.returncode, result.stdout) == (7, "half\n")


def test_the_callers_environment_reaches_the_generator(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_INPUTS", "/data/in")
    result = run_generator(third_stage(str(tmp_path)), 'echo "$SWEEP_INPUTS"')
    assert result.stdout == "/data/in\n"


# --- the message of a failed generator ---------------------------------------------------------


def test_a_failed_generator_names_the_stage_problem_exit_code_command_and_output():
    text = generator_failure(
        "aggregate", "python3 gen.py", "the generator command failed", 3, "reading\nno inputs\n"
    )
    assert text == (
        "stage 'aggregate': the generator command failed (exit code 3); command: python3 "
        "gen.py; output: reading / no inputs"
    )


def test_a_generator_without_output_says_so_and_without_exit_code_leaves_it_out():
    text = generator_failure("s", "gen", "the generator wrote no config", None, "")
    assert text == "stage 's': the generator wrote no config; command: gen; no output"


def test_a_long_output_gives_its_last_lines_on_the_first_line_and_the_tail_below():
    output = "\n".join(f"line {i}" for i in range(1, 11))
    first, *rest = generator_failure("s", "gen", "failed", 1, output).splitlines()
    assert first.endswith("output: line 8 / line 9 / line 10")
    assert rest[0] == "output (last lines):"
    assert rest[1:] == [f"line {i}" for i in range(1, 11)]


def test_the_first_line_stays_short_however_long_the_output_lines_are():
    first = generator_failure("s", "gen", "failed", 1, "x" * 10_000).splitlines()[0]
    assert first.endswith("output: " + "x" * LAST_LINES_CHARS)


def test_stdout_and_stderr_are_merged_without_blank_parts():
    assert merged_output("out\n", "") == "out"
    assert merged_output("out\n", "err\n") == "out\nerr"
    assert merged_output("  \n", "err") == "err"


# --- the batches a generated stage maps over ---------------------------------------------------


def fan_in(per_batch: int = 2, **group) -> list[dict]:
    """Five jobs and `final` blocked by all of them."""
    jobs = [{"name": f"j{i}", "command": "true"} for i in range(5)]
    jobs.append({"name": "final", "command": "true", "blocked_by": [j["name"] for j in jobs]})
    return planned_batches(
        parse_configuration(
            {
                "jobs": jobs,
                "submission_groups": [
                    {
                        "name": "default",
                        "slurm": {"walltime": "5", "account": "proj"},
                        "batching": {"per_node_batch_size": per_batch},
                        **group,
                    }
                ],
            }
        )
    )


def test_each_planned_batch_names_its_jobs_in_plan_order():
    batches = fan_in()
    assert [b["name"] for b in batches] == ["default-0000", "default-0001", "default-0002"]
    assert [b["jobs"] for b in batches] == [["j0", "j1"], ["j2", "j3"], ["j4", "final"]]


def test_blocked_by_across_batches_gives_the_batches_followed_by_jobs_and_map_index():
    first, second, last = fan_in()
    assert first["after"] == second["after"] == {}
    assert first["after_index"] == second["after_index"] == []
    assert last["after"] == {"default-0000": ["j0", "j1"], "default-0001": ["j2", "j3"]}
    assert last["after_index"] == [0, 1]


def test_the_node_runner_spec_marks_blockers_in_other_batches_external():
    spec = fan_in()[-1]["spec"]
    assert spec["batch"] == "default-0002"
    final = next(job for job in spec["jobs"] if job["name"] == "final")
    assert list(final["blocked_by"]) == ["j4"]
    assert list(final["external_blockers"]) == ["j0", "j1", "j2", "j3"]


def test_each_batch_carries_its_groups_slurm_parameters_and_limits():
    batches = fan_in(max_concurrent_batches=2)
    for batch in batches:
        assert batch["slurm"]["account"] == "proj" and batch["slurm"]["walltime"] == "5"
        assert batch["max_concurrent_batches"] == 2
        assert batch["container"] is None and batch["retry"] is None
        assert batch["array"] is False and batch["array_throttle"] is None


def test_one_job_batches_merge_into_an_array_throttled_by_the_group_limit():
    config = parse_configuration(
        {
            "jobs": [{"name": f"j{i}", "command": "true"} for i in range(3)]
            + [{"name": "final", "command": "true", "blocked_by": ["j0"]}],
            "submission_groups": [
                {
                    "name": "default",
                    "max_concurrent_batches": 2,
                    "batching": {"per_node_batch_size": 1, "job_arrays": True},
                }
            ],
        }
    )
    array, final = planned_batches(config)
    assert array["array"] is True and array["jobs"] == ["j0", "j1", "j2"]
    assert array["array_throttle"] == 2
    assert final["jobs"] == ["final"]
    assert final["after"] == {array["name"]: ["j0", "j1", "j2"]} and final["after_index"] == [0]


def test_every_group_keeps_its_own_parameters():
    config = parse_configuration(
        {
            "jobs": [
                {"name": "cpu1", "command": "true", "submission_group": "cpu"},
                {"name": "gpu1", "command": "true", "submission_group": "gpu"},
            ],
            "submission_groups": [
                {"name": "cpu", "slurm": {"partition": "short"}},
                {
                    "name": "gpu",
                    "slurm": {"partition": "gpu", "gres": "gpu:a100:1"},
                    "container": {"image": "/images/sim.sif", "runtime": "apptainer"},
                },
            ],
        }
    )
    by_job = {batch["jobs"][0]: batch for batch in planned_batches(config)}
    assert by_job["cpu1"]["slurm"]["partition"] == "short"
    assert by_job["cpu1"]["slurm"]["gres"] is None and by_job["cpu1"]["container"] is None
    assert by_job["gpu1"]["slurm"]["gres"] == "gpu:a100:1"
    assert by_job["gpu1"]["container"]["image"] == "/images/sim.sif"


@pytest.mark.parametrize("per_batch", [1, 3, 6])
def test_every_job_is_in_exactly_one_batch(per_batch):
    batches = fan_in(per_batch, batching={"per_node_batch_size": per_batch, "job_arrays": False})
    names = [name for batch in batches for name in batch["jobs"]]
    assert sorted(names) == ["final", "j0", "j1", "j2", "j3", "j4"]
