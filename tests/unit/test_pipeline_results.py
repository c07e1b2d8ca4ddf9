"""A pipeline run dir read by `results show`, `stats`, the report and the results page.

Each stage's run dir is what the node runner leaves (`run_locally`, the path SLURM batches
take); the pipeline's manifest and the stages' `stage.json` are written by the writers the
DAG uses. The pipeline: `simulate` succeeded, `aggregate` failed (one job failed, one
canceled because of it), `report` was skipped.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from airflow_jobforge.cli.main import main
from airflow_jobforge.config import dump_config
from airflow_jobforge.config.models import JobConfiguration
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.local.direct import run_locally
from airflow_jobforge.plugins import rundata
from airflow_jobforge.results.report import write_pipeline_report
from airflow_jobforge.results.stats import gather_pipeline_stats, write_efficiency
from airflow_jobforge.rundir.pipeline import (
    PIPELINE_MANIFEST,
    STAGE_STATUS,
    PipelineRunManifest,
    StageEntry,
    StageStatus,
    is_pipeline_run_dir,
    pipeline_manifest_path,
    read_pipeline_manifest,
    read_stage_status,
    stage_dir,
    stage_state,
    write_pipeline_manifest,
    write_stage_status,
)
from airflow_jobforge.slurm.usage import parse_sacct_usage

USAGE = Path(__file__).parent.parent / "fixtures" / "sacct_usage"
# sbatch -c 2 --mem-per-cpu=100M: 6 s elapsed, 9.618 s CPU, MaxRSS 13004800
MULTI = parse_sacct_usage((USAGE / "usage_finished_noconvert.txt").read_text())["4515"]

SIMULATE = {"jobs": [{"name": "sim_1", "command": "echo 1"}, {"name": "sim_2", "command": "true"}]}
AGGREGATE = {
    "jobs": [
        {"name": "merge", "command": "echo merged"},
        {"name": "fit", "command": "echo 'fit diverged' >&2; exit 3"},
        {
            "name": "plot",
            "command": "echo plot",
            "blocked_by": ["fit"],
            "cancel_on_blocking_job_failure": True,
        },
    ]
}
STAGES = [
    StageEntry("simulate", 1, "config", config_file="sims.json"),
    StageEntry("aggregate", 2, "generated", command="python make_aggregate.py"),
    StageEntry("report", 3, "generated", command="python make_report.py"),
]
MANIFEST = PipelineRunManifest(
    STAGES, pipeline_file="pipeline.toml", dag_id="jobforge_pipe", run_id="manual__1"
)


def run_stage(pipeline_dir: Path, name: str, config: dict, slurm_job: str | None = None) -> Path:
    """One stage's run dir as the node runner leaves it, its config beside it."""
    directory = stage_dir(pipeline_dir, name)
    directory.mkdir(parents=True)
    config_file = directory / "config.json"
    dump_config(JobConfiguration.model_validate(config), config_file)
    with pytest.MonkeyPatch.context() as patch:
        if slurm_job:
            patch.setenv("SLURM_JOB_ID", slurm_job)
        run_locally(
            JobConfiguration.model_validate(config),
            directory,
            progress=lambda _: None,
            config_file=config_file,
        )
    return directory


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("pipe") / "out" / "manual__1"
    write_pipeline_manifest(run_dir, MANIFEST)
    simulate = run_stage(run_dir, "simulate", SIMULATE, slurm_job="4515")
    write_stage_status(simulate, StageStatus.ended_now("success", jobs=2))
    aggregate = run_stage(run_dir, "aggregate", AGGREGATE)
    write_stage_status(aggregate, StageStatus.ended_now("failed", "1 job failed", jobs=3))
    write_stage_status(run_dir / "report", StageStatus("skipped", "stage aggregate failed"))
    for number, name in enumerate(("simulate", "aggregate", "report"), 1):
        (run_dir / f"output-stage{number}").symlink_to(name)  # as JADE's scripts want them
    return run_dir


@pytest.fixture
def pipeline(pristine, tmp_path) -> Path:
    """A private copy (symlinks kept): tests change it."""
    return shutil.copytree(pristine, tmp_path / "out" / "manual__1", symlinks=True)


def show(capsys, *argv: str) -> tuple[int, str]:
    code = main(["results", "show", *argv])
    return code, capsys.readouterr().out


# --- the files ---------------------------------------------------------------------------------
def test_the_manifest_and_a_stage_status_read_back_as_written(tmp_path):
    write_pipeline_manifest(tmp_path, MANIFEST)
    assert read_pipeline_manifest(tmp_path) == MANIFEST
    assert PipelineRunManifest.from_dict(json.loads(MANIFEST.to_json())) == MANIFEST
    assert is_pipeline_run_dir(tmp_path) and (tmp_path / PIPELINE_MANIFEST).is_file()
    status = StageStatus("failed", "generator exited 2", jobs=None, ended="2026-01-01T00:00:00")
    write_stage_status(tmp_path / "aggregate", status)
    assert read_stage_status(tmp_path / "aggregate") == status
    assert StageStatus.from_dict(json.loads(status.to_json())) == status
    assert not [p for p in tmp_path.rglob(".*")], "no temp file left"


def test_a_missing_or_damaged_manifest_or_status_reads_as_none(tmp_path):
    assert read_pipeline_manifest(tmp_path) is None and not is_pipeline_run_dir(tmp_path)
    assert read_stage_status(tmp_path) is None
    pipeline_manifest_path(tmp_path).write_text('{"stages": [{"name": "a"')
    (tmp_path / STAGE_STATUS).write_text('{"state": "exploded"}')
    assert read_pipeline_manifest(tmp_path) is None and read_stage_status(tmp_path) is None


def test_a_stage_name_cannot_lead_out_of_the_pipeline_run_dir(tmp_path):
    with pytest.raises(JobForgeError, match="no stage name"):
        stage_dir(tmp_path, "../elsewhere")
    bad = {"stages": [{"name": "..", "number": 1, "kind": "config"}]}
    pipeline_manifest_path(tmp_path).write_text(json.dumps(bad))
    assert read_pipeline_manifest(tmp_path) is None


def test_a_stage_is_ended_by_its_status_running_with_a_dir_and_else_not_started(pipeline):
    assert stage_state(pipeline, STAGES[0]) == ("success", None)
    assert stage_state(pipeline, STAGES[1]) == ("failed", "1 job failed")
    assert stage_state(pipeline, STAGES[2]) == ("skipped", "stage aggregate failed")
    (pipeline / "aggregate" / STAGE_STATUS).unlink()
    shutil.rmtree(pipeline / "report")
    assert stage_state(pipeline, STAGES[1]) == ("running", None)
    assert stage_state(pipeline, STAGES[2]) == ("not started", None)


# --- results show ------------------------------------------------------------------------------
def test_show_gives_each_stage_a_heading_and_its_table_then_the_totals(pipeline, capsys):
    code, out = show(capsys, str(pipeline))
    lines = out.splitlines()
    assert code == 1
    assert lines[0] == f"Pipeline: {pipeline}"
    headings = [line for line in lines if line.startswith("stage ")]
    assert headings == [
        "stage 1/3 simulate (config file sims.json): success — "
        "2 jobs: 2 successful, 0 failed, 0 canceled, 0 missing",
        "stage 2/3 aggregate (generated): failed — 1 job failed; "
        "3 jobs: 1 successful, 1 failed, 1 canceled, 0 missing",
        "stage 3/3 report (generated): skipped — stage aggregate failed",
    ]
    assert f"Run: {pipeline / 'aggregate'}" in lines
    rows = {line.split()[0]: line.split()[1] for line in lines if line.split()[:1] != []}
    assert (rows["sim_1"], rows["fit"], rows["plot"]) == ("ok", "failed", "canceled")
    assert "| fit diverged" in out, "a failed job's stderr tail, as for one run"
    assert lines[-1] == (
        "total: 3 stages: 1 success, 1 failed, 1 skipped; "
        "5 jobs: 3 successful, 1 failed, 1 canceled, 0 missing"
    )
    skipped = lines.index(headings[2])
    assert lines[skipped + 1 :] == ["", lines[-1]], "a stage that never ran has no table"


def test_a_pipeline_whose_every_stage_succeeded_exits_0(tmp_path, capsys):
    run_dir = tmp_path / "run"
    write_pipeline_manifest(run_dir, PipelineRunManifest(STAGES[:1]))
    write_stage_status(run_stage(run_dir, "simulate", SIMULATE), StageStatus("success"))
    code, out = show(capsys, str(run_dir))
    assert code == 0
    assert out.splitlines()[-1] == (
        "total: 1 stage: 1 success; 2 jobs: 2 successful, 0 failed, 0 canceled, 0 missing"
    )


def test_a_running_pipeline_is_not_a_success_and_shows_what_has_not_started(pipeline, capsys):
    for name in ("simulate", "aggregate"):
        (pipeline / name / STAGE_STATUS).unlink()
    shutil.rmtree(pipeline / "report")
    write_stage_status(pipeline / "simulate", StageStatus("success"))
    (pipeline / "aggregate" / "results" / "default-0000.jsonl").unlink()  # no job ended yet
    code, out = show(capsys, str(pipeline))
    headings = [line for line in out.splitlines() if line.startswith("stage ")]
    assert code == 1
    assert headings[1:] == [
        "stage 2/3 aggregate (generated): running — "
        "3 jobs: 0 successful, 0 failed, 0 canceled, 3 missing",
        "stage 3/3 report (generated): not started",
    ]
    assert "1 success, 1 running, 1 not started" in out.splitlines()[-1]


def test_the_status_filter_applies_to_each_stage(pipeline, capsys):
    code, out = show(capsys, str(pipeline), "--status", "failed")
    lines = out.splitlines()
    assert code == 1
    listed = [line.split()[0] for line in lines if line[:1] not in ("", " ", "|")]
    assert "fit" in listed and not {"sim_1", "merge", "plot"} & set(listed)
    simulate = lines.index(f"Run: {pipeline / 'simulate'}")
    assert lines[simulate + 1] == "No job is failed"


def test_json_gives_each_stage_its_state_and_document_and_the_totals(pipeline, capsys):
    code, out = show(capsys, str(pipeline), "--json")
    document = json.loads(out)
    assert code == 1 and document["all_succeeded"] is False
    assert document["dag_id"] == "jobforge_pipe" and document["run_id"] == "manual__1"
    stages = {s["name"]: s for s in document["stages"]}
    assert [s["state"] for s in document["stages"]] == ["success", "failed", "skipped"]
    assert stages["aggregate"]["results"]["counts"]["failed"] == 1
    jobs = {j["name"]: j for j in stages["aggregate"]["results"]["jobs"]}
    assert jobs["fit"]["stderr_tail"] == "fit diverged\n"
    assert stages["report"]["results"] is None
    assert stages["report"]["reason"] == "stage aggregate failed"
    assert document["counts"] == {
        "total": 5,
        "successful": 3,
        "failed": 1,
        "canceled": 1,
        "missing": 0,
    }


def test_the_output_root_means_its_newest_pipeline_run(pipeline, capsys):
    older = shutil.copytree(pipeline, pipeline.parent / "manual__0", symlinks=True)
    time.sleep(0.01)
    (pipeline / "aggregate" / "results").touch()
    code, out = show(capsys, str(pipeline.parent))
    assert code == 1 and out.splitlines()[0] == f"Pipeline: {pipeline}"
    assert older.is_dir()


def test_a_stage_dir_is_shown_as_the_one_run_it_is(pipeline, capsys):
    code, out = show(capsys, str(pipeline / "aggregate"))
    assert code == 1 and out.splitlines()[0] == f"Run: {pipeline / 'aggregate'}"
    assert out.rstrip().endswith("3 jobs: 1 successful, 1 failed, 1 canceled, 0 missing")


# --- what acts on one run ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["results", "resubmit", "RUN", "-c", "new.json"],
        ["cancel", "RUN", "--backend", "local"],
        ["events", "RUN"],
    ],
)
def test_what_acts_on_one_run_asks_for_a_stage_dir_of_a_pipeline(pipeline, capsys, argv):
    assert main([str(pipeline) if a == "RUN" else a for a in argv]) == 2
    assert capsys.readouterr().err == (
        f"jobforge: {pipeline} is a pipeline run dir: give a stage's dir, "
        f"e.g. {pipeline / 'aggregate'}\n"
    )


def test_a_stage_dir_resubmits_as_any_run(pipeline, tmp_path, capsys):
    new = tmp_path / "again.json"
    assert main(["results", "resubmit", str(pipeline / "aggregate"), "-c", str(new)]) == 0
    assert {j.name for j in JobConfiguration.model_validate_json(new.read_text()).jobs} == {"fit"}


# --- stats and reports -------------------------------------------------------------------------
@pytest.fixture
def no_live_sacct(monkeypatch):
    """The recorded sacct data only: on a machine with the test cluster, a live sacct knows a
    job of the recorded id too (ids repeat across clusters) and would answer for it."""
    from airflow_jobforge.cli import stats_cmds

    monkeypatch.setattr(stats_cmds, "fetch_usage", lambda ids: {})


def test_stats_give_each_stage_its_block_and_the_totals(pipeline, capsys, no_live_sacct):
    write_efficiency(pipeline / "simulate", {"4515": MULTI})
    assert main(["stats", str(pipeline)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Pipeline: {pipeline}"
    assert lines[2].startswith("stage 1/3 simulate (config file sims.json): success")
    assert lines[3] == f"Run: {pipeline / 'simulate'}"
    assert f"Run: {pipeline / 'aggregate'}" in lines
    assert "stage 3/3 report (generated): skipped — stage aggregate failed" in lines
    totals = lines[lines.index("Totals over 3 stages: 1 success, 1 failed, 1 skipped") :]
    assert totals[1] == "Jobs: 5 jobs: 3 successful, 1 failed, 1 canceled, 0 missing"
    assert totals[2].startswith("SLURM: 1 SLURM jobs, 0.0017 node-hours; CPU 0.0027 of")


def test_stats_json_holds_each_stage_and_the_sums(pipeline, capsys, no_live_sacct):
    write_efficiency(pipeline / "simulate", {"4515": MULTI})
    assert main(["stats", str(pipeline), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [s["state"] for s in document["stages"]] == ["success", "failed", "skipped"]
    assert document["stages"][2]["stats"] is None
    assert document["stages"][1]["stats"]["summary"]["failed"] == 1
    assert document["totals"]["summary"]["total"] == 5
    assert document["totals"]["usage"]["jobs"] == 1
    assert gather_pipeline_stats(pipeline).totals.node_hours == MULTI.node_hours


def test_the_pipeline_index_links_each_stage_report_that_exists(pipeline):
    (pipeline / "simulate" / "report.html").write_text("<html></html>")
    path = write_pipeline_report(pipeline)
    page = path.read_text()
    assert path == pipeline / "report.html"
    assert "href='simulate/report.html'" in page and "aggregate/report.html" not in page
    assert "3 stages: 1 success, 1 failed, 1 skipped" in page
    assert "<td>stage aggregate failed</td>" in page


def test_stats_html_writes_the_index_and_each_stage_report_beside_it(
    pipeline, tmp_path, capsys, no_live_sacct
):
    index = tmp_path / "html" / "pipe.html"
    assert main(["stats", str(pipeline), "--html", str(index)]) == 0
    assert sorted(p.name for p in index.parent.iterdir()) == [
        "pipe.aggregate.html",
        "pipe.html",
        "pipe.simulate.html",
    ]
    page = index.read_text()
    assert "href='pipe.simulate.html'" in page and "href='pipe.aggregate.html'" in page
    assert not (pipeline / "report.html").exists(), "the run dir is left as it was"


# --- the results page --------------------------------------------------------------------------
def submit_entry(task_id: str, output_dir: Path, batch: str, *names: str) -> tuple:
    jobs = [{"name": n, "command": "true"} for n in names]
    request = {"output_dir": str(output_dir), "batch": {"batch": batch, "jobs": jobs}}
    return task_id, "return_value", {"job_id": "1", "request": request}


def test_the_page_finds_the_pipeline_from_a_stage_submit_and_shows_its_stages(pipeline):
    entries = [submit_entry("simulate.submit_0000", pipeline / "simulate", "default-0000", "a")]
    location = rundata.find_run_location(entries)
    data = rundata.page_data(location)
    stages = {s["name"]: s for s in data["pipeline"]["stages"]}
    assert data["pipeline"]["run_dir"] == str(pipeline)
    assert [s["state"] for s in data["pipeline"]["stages"]] == ["success", "failed", "skipped"]
    assert stages["simulate"]["counts"] == {
        "total": 2,
        "ok": 2,
        "failed": 0,
        "canceled": 0,
        "missing": 0,
    }
    assert stages["report"]["counts"] is None and stages["report"]["reason"]
    assert data["pipeline"]["counts"]["total"] == 5
    assert data["stage"] == "aggregate", "the failed stage first"
    assert {r["name"]: r["status"] for r in data["jobs"]} == {
        "fit": "failed",
        "merge": "ok",
        "plot": "canceled",
    }
    assert data["run_dir"] == str(pipeline / "aggregate")


def test_the_page_shows_the_stage_asked_for_and_a_stage_not_started_has_no_jobs(pipeline):
    location = rundata.RunLocation(str(pipeline))
    simulate = rundata.page_data(location, "simulate")
    assert [r["name"] for r in simulate["jobs"]] == ["sim_1", "sim_2"]
    report = rundata.page_data(location, "report")
    assert report["jobs"] == [] and report["counts"]["total"] == 0
    with pytest.raises(JobForgeError, match="no stage 'nope' in this pipeline"):
        rundata.page_data(location, "nope")


def test_a_stage_summary_or_a_pipeline_run_dir_xcom_names_the_run(pipeline):
    by_summary = [("aggregate.summary", "run_dir", str(pipeline / "aggregate"))]
    assert rundata.find_run_location(by_summary).run_dir == str(pipeline / "aggregate")
    assert rundata.pipeline_dir_of(pipeline / "aggregate") == pipeline
    assert rundata.find_run_location([("pipeline_summary", "run_dir", "/p")]).run_dir == "/p"
    explicit = [*by_summary, ("simulate.start", "pipeline_run_dir", str(pipeline))]
    assert rundata.find_run_location(explicit).run_dir == str(pipeline)


def test_a_stage_without_a_manifest_counts_its_submitted_jobs(pipeline):
    (pipeline / "aggregate" / "run.json").unlink()
    entries = [
        submit_entry("aggregate.submit_0000", pipeline / "aggregate", "default-0000", "merge"),
        submit_entry("aggregate.submit_0001", pipeline / "aggregate", "default-0001", "late"),
    ]
    data = rundata.page_data(rundata.find_run_location(entries), "aggregate")
    assert {r["name"]: r["status"] for r in data["jobs"]}["late"] == "missing"
    simulate = next(s for s in data["pipeline"]["stages"] if s["name"] == "simulate")
    assert simulate["counts"]["total"] == 2, "another stage's batches do not mix in"


def test_job_output_and_report_of_a_pipeline_come_from_the_stage_dir(pipeline):
    directory = rundata.results_dir(pipeline / "simulate", "aggregate")
    assert directory == pipeline / "aggregate"
    assert rundata.job_output(directory, "fit", "err")["text"] == "fit diverged\n"
    assert rundata.results_dir(pipeline) == pipeline / "aggregate"
    with pytest.raises(JobForgeError, match="no stage"):
        rundata.results_dir(pipeline, "../simulate")
