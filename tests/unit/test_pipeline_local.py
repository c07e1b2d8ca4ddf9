"""`jobforge run PIPELINE --no-airflow`: the stages run one after the other on this machine,
through the node runner, without Airflow; a generated stage's command runs as the DAG's plan
task runs it. The run dir is the one the DAG leaves, so `results show` reads it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from airflow_jobforge.cli.main import main
from airflow_jobforge.config.pipeline import load_pipeline
from airflow_jobforge.local.pipeline import run_pipeline_locally
from airflow_jobforge.rundir import collect_results
from airflow_jobforge.rundir.pipeline import (
    is_pipeline_run_dir,
    read_pipeline_manifest,
    read_stage_status,
)

# Stage 2's generator: one job per file stage 1 wrote, and `final` blocked by all of them;
# batches of 2 put `final` in a batch of its own. EMPTY/BROKEN/FAIL_WITH change what it does.
GENERATOR = """\
import json, os, sys
shared = sys.argv[1]
if os.environ.get("FAIL_WITH"):
    print("no simulation outputs found in", shared)
    sys.exit(int(os.environ["FAIL_WITH"]))
names = sorted(n for n in os.listdir(shared) if n.startswith("sim") and n.endswith(".txt"))
jobs = [{"name": "agg_" + n[:-4], "command": f"cat {shared}/{n} >> {shared}/agg.log"}
        for n in names]
jobs.append({"name": "final", "command": f"echo final >> {shared}/agg.log",
             "blocked_by": [j["name"] for j in jobs]})
if os.environ.get("EMPTY"):
    jobs = []
if os.environ.get("BROKEN"):
    jobs = [{"name": "no spaces allowed", "command": "true"}]
config = {"jobs": jobs, "submission_groups": [
    {"name": "default", "batching": {"per_node_batch_size": 2}}]}
json.dump(config, open(os.environ["JOBFORGE_STAGE_CONFIG"], "w"))
print("generated", len(jobs), "jobs")
"""


def write_pipeline(
    directory: Path, *, env: str = "", failing_job: bool = False, on_failure: str = "stop"
) -> tuple[Path, Path]:
    """simulate (3 jobs writing sim<i>.txt) -> aggregate (generated) -> report (a config).
    Returns (the pipeline file, the dir the jobs write into)."""
    shared = directory / "shared"
    shared.mkdir()
    (directory / "gen.py").write_text(GENERATOR)
    sims = [{"name": f"sim{i}", "command": f"echo {i} > {shared}/sim{i}.txt"} for i in (1, 2, 3)]
    if failing_job:
        sims[1]["command"] = "echo disk on fire >&2; exit 7"
    (directory / "sims.json").write_text(json.dumps({"jobs": sims}))
    report = [{"name": "report", "command": f"ls {shared} > {shared}/report.txt"}]
    (directory / "report.json").write_text(json.dumps({"jobs": report}))
    stages = [
        {"name": "simulate", "config_file": "sims.json", "on_failure": on_failure},
        {"name": "aggregate", "command": f"{env}{sys.executable} {directory / 'gen.py'} {shared}"},
        {"name": "report", "config_file": "report.json"},
    ]
    path = directory / "pipeline.json"
    path.write_text(json.dumps({"stages": stages}))
    return path, shared


def run_cli(capsys, pipeline: Path, output: Path) -> tuple[int, str, Path | None]:
    code = main(["run", str(pipeline), "--no-airflow", "-o", str(output)])
    captured = capsys.readouterr()
    runs = [d for d in output.iterdir() if is_pipeline_run_dir(d)] if output.is_dir() else []
    return code, captured.out + captured.err, runs[0] if runs else None


def test_a_generated_stage_runs_from_the_previous_stage_outputs(tmp_path, capsys):
    pipeline, shared = write_pipeline(tmp_path)
    code, text, run_dir = run_cli(capsys, pipeline, tmp_path / "out")
    assert code == 0, text
    assert run_dir is not None and run_dir.name.startswith("nodag__")
    assert "total: 3 stages: 3 success; 8 jobs: 8 successful" in text
    assert "stage 2/3 aggregate (generated): success" in text
    assert "aggregate generator: generated 4 jobs" in text
    aggregate = collect_results(run_dir / "aggregate")
    assert sorted(aggregate) == ["agg_sim1", "agg_sim2", "agg_sim3", "final"]
    # blocked_by across batches of a generated stage: final after every agg job
    assert aggregate["final"].batch != aggregate["agg_sim1"].batch
    order = (shared / "agg.log").read_text().split()
    assert sorted(order[:3]) == ["1", "2", "3"] and order[3:] == ["final"]
    assert "agg.log" in (shared / "report.txt").read_text(), "report ran after aggregate"
    manifest = read_pipeline_manifest(run_dir)
    assert [s.name for s in manifest.stages] == ["simulate", "aggregate", "report"]
    assert manifest.run_id.startswith("nodag__") and manifest.pipeline_file == str(pipeline)
    assert [read_stage_status(run_dir / s).state for s in ("simulate", "aggregate", "report")] == [
        "success"
    ] * 3
    assert read_stage_status(run_dir / "aggregate").jobs == 4
    assert (run_dir / "output-stage1").resolve() == (run_dir / "simulate").resolve()
    # `results show` of the output root finds the pipeline run and says the same
    assert main(["results", "show", str(tmp_path / "out")]) == 0
    assert "total: 3 stages: 3 success" in capsys.readouterr().out


def test_a_failing_generator_fails_its_stage_with_its_message_and_skips_the_next(tmp_path, capsys):
    pipeline, _ = write_pipeline(tmp_path, env="FAIL_WITH=3 ")
    code, text, run_dir = run_cli(capsys, pipeline, tmp_path / "out")
    assert code == 1, text
    assert "Traceback" not in text
    status = read_stage_status(run_dir / "aggregate")
    assert status.state == "failed"
    for part in (
        "stage 'aggregate': the generator command failed (exit code 3)",
        f"command: FAIL_WITH=3 {sys.executable} {tmp_path / 'gen.py'}",
        "output: no simulation outputs found in",
    ):
        assert part in status.reason and part in text, text
    report = read_stage_status(run_dir / "report")
    assert report.state == "skipped" and report.reason == "stage aggregate failed"
    assert "stage 3/3 report (config file" in text and "skipped — stage aggregate failed" in text
    assert "total: 3 stages: 1 success, 1 failed, 1 skipped" in text


def test_an_empty_generated_config_fails_the_stage(tmp_path, capsys):
    pipeline, _ = write_pipeline(tmp_path, env="EMPTY=1 ")
    code, text, run_dir = run_cli(capsys, pipeline, tmp_path / "out")
    assert code == 1
    reason = read_stage_status(run_dir / "aggregate").reason
    assert "stage 'aggregate': the generated config" in reason and "has no jobs" in reason
    assert "output: generated 0 jobs" in reason and reason.splitlines()[0] in text
    assert read_stage_status(run_dir / "report").state == "skipped"


def test_an_invalid_generated_config_fails_the_stage_naming_the_problem(tmp_path, capsys):
    pipeline, _ = write_pipeline(tmp_path, env="BROKEN=1 ")
    code, text, run_dir = run_cli(capsys, pipeline, tmp_path / "out")
    assert code == 1 and "Traceback" not in text
    reason = read_stage_status(run_dir / "aggregate").reason
    assert "the generated config is invalid" in reason and "no spaces allowed" in reason


def test_a_failed_job_stops_the_pipeline_unless_the_stage_says_continue(tmp_path, capsys):
    (tmp_path / "stop").mkdir()
    pipeline, shared = write_pipeline(tmp_path / "stop", failing_job=True)
    code, text, run_dir = run_cli(capsys, pipeline, tmp_path / "stop" / "out")
    assert code == 1
    assert read_stage_status(run_dir / "simulate").state == "failed"
    assert read_stage_status(run_dir / "aggregate").reason == "stage simulate failed"
    assert not (shared / "agg.log").exists(), "the generator never ran"
    assert "disk on fire" in text, "the failed job's stderr tail is shown"

    (tmp_path / "go").mkdir()
    pipeline, shared = write_pipeline(tmp_path / "go", failing_job=True, on_failure="continue")
    code, text, run_dir = run_cli(capsys, pipeline, tmp_path / "go" / "out")
    assert code == 1, "a stage failed"
    assert read_stage_status(run_dir / "aggregate").state == "success"
    assert sorted((shared / "agg.log").read_text().split()) == ["1", "3", "final"]


def test_the_generator_sees_jade_variables_and_output_stage_links(tmp_path):
    shared = tmp_path / "seen"
    script = (
        "import json, os\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith(('JADE_', 'JOBFORGE_'))}\n"
        "out = env['JADE_PIPELINE_OUTPUT_DIR']\n"
        "env['cwd'] = os.getcwd()\n"
        "env['stage1_results'] = os.listdir(os.path.join(out, 'output-stage1', 'results'))\n"
        "env['status_file_exists'] = os.path.isfile(env['JADE_PIPELINE_STATUS_FILE'])\n"
        f"json.dump(env, open({str(shared)!r}, 'w'))\n"
        "json.dump({'jobs': [{'name': 'x', 'command': 'true'}]},\n"
        "          open('config-stage2.json', 'w'))\n"
    )
    (tmp_path / "see.py").write_text(script)
    (tmp_path / "one.json").write_text(json.dumps({"jobs": [{"name": "a", "command": "true"}]}))
    data = {
        "stages": [
            {"name": "first", "config_file": "one.json"},
            {
                "name": "second",
                "command": f"{sys.executable} {tmp_path / 'see.py'}",
                "config_output": "config-stage2.json",
            },
        ]
    }
    (tmp_path / "p.json").write_text(json.dumps(data))
    pipeline, _ = load_pipeline(tmp_path / "p.json")
    run = run_pipeline_locally(pipeline, tmp_path / "p.json", tmp_path / "out", lambda _: None)
    assert run.succeeded, run.stages
    seen = json.loads(shared.read_text())
    run_dir = str(run.run_dir)
    assert seen["JADE_PIPELINE_OUTPUT_DIR"] == run_dir == seen["cwd"]
    assert seen["JADE_PIPELINE_STAGE_ID"] == "2" and seen["JOBFORGE_STAGE_NAME"] == "second"
    assert seen["JADE_PIPELINE_STATUS_FILE"] == os.path.join(run_dir, "pipeline.json")
    assert seen["status_file_exists"] and seen["stage1_results"]
    assert seen["JOBFORGE_PREVIOUS_STAGE_DIR"] == os.path.join(run_dir, "first")
    assert seen["JOBFORGE_STAGE_CONFIG"] == os.path.join(run_dir, "config-stage2.json")
    assert [(s.name, s.state) for s in run.stages] == [("first", "success"), ("second", "success")]


def test_plan_of_a_pipeline_shows_static_batches_and_generated_stages(tmp_path, capsys):
    pipeline, _ = write_pipeline(tmp_path)
    assert main(["plan", str(pipeline)]) == 0
    out = capsys.readouterr().out
    assert "stage 1/3 simulate: config file" in out and "  default-0000: 3 jobs" in out
    assert "stage 2/3 aggregate: generated at run time by" in out
    assert "stage 3/3 report: config file" in out


def test_a_broken_pipeline_is_one_line_and_exit_code_2(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"stages": [{"name": "a", "config_file": "missing.json"}]}))
    assert main(["run", str(path), "--no-airflow", "-o", str(tmp_path / "out")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
