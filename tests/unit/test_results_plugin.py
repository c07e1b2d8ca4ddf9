"""The results page's data (plugins.rundata) on a real run dir, and the plugin's shape.

The run dir is what the node runner leaves: `run_locally` runs a small config, one job
failing and one canceled because of it, through the same runner SLURM batches use.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from airflow_jobforge.config.models import JobConfiguration
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.local.direct import run_locally
from airflow_jobforge.plugins import RESULTS_VIEW, URL_PREFIX, JobforgePlugin, rundata
from airflow_jobforge.rundir.manifest import RunManifest, write_manifest

CONFIG = {
    "jobs": [
        {"name": "a", "command": "echo out of a; echo err of a >&2"},
        {"name": "b", "command": "seq 1 100; echo b broke >&2; exit 3"},
        {
            "name": "c",
            "command": "echo never",
            "blocked_by": ["b"],
            "cancel_on_blocking_job_failure": True,
        },
    ],
    "submission_groups": [{"name": "g", "batching": {"per_node_batch_size": 3}}],
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    summary = run_locally(JobConfiguration.model_validate(CONFIG), out, progress=lambda _: None)
    assert (summary.successful, summary.failed, summary.canceled) == (1, 1, 1)
    return out


@pytest.fixture
def bare_run_dir(run_dir, tmp_path) -> Path:
    """The run without its manifest: a run whose summary has not run (yet)."""
    copy = tmp_path / "bare"
    shutil.copytree(run_dir, copy)
    (copy / "run.json").unlink()
    return copy


def test_rows_give_every_jobs_state_code_batch_and_where_it_ran(run_dir):
    data = rundata.run_results(run_dir)
    rows = {row["name"]: row for row in data["jobs"]}
    assert {n: r["status"] for n, r in rows.items()} == {"a": "ok", "b": "failed", "c": "canceled"}
    assert [rows[n]["return_code"] for n in "abc"] == [0, 3, None]
    assert {r["batch"] for r in rows.values()} == {"g-0000"}
    assert rows["a"]["host"] and rows["a"]["max_rss_bytes"] > 0 and rows["a"]["exec_time_s"] >= 0
    assert rows["c"]["exec_time_s"] is None, "a canceled job never ran"
    assert "b" in rows["c"]["reason"]
    assert data["counts"] == {"total": 3, "ok": 1, "failed": 1, "canceled": 1, "missing": 0}
    assert data["manifest"] is True and data["report"] is False


def test_without_a_manifest_the_batch_files_say_which_jobs_the_run_had(bare_run_dir):
    (bare_run_dir / "results" / "g-0000.jsonl").unlink()
    data = rundata.run_results(bare_run_dir)
    assert [(r["name"], r["status"], r["batch"]) for r in data["jobs"]] == [
        (name, "missing", "g-0000") for name in "abc"
    ]
    assert data["manifest"] is False


def test_jobs_of_a_submitted_batch_that_left_no_record_are_missing(bare_run_dir):
    data = rundata.run_results(bare_run_dir, submitted={"a": "g-0000", "d": "g-0001"})
    rows = {row["name"]: row for row in data["jobs"]}
    assert rows["d"] == {**rundata.job_row("d", "g-0001", None), "status": "missing"}
    assert rows["d"]["reason"] == "no result record"
    assert data["counts"]["missing"] == 1 and data["counts"]["total"] == 4


def test_jobs_the_manifest_names_without_a_record_are_missing_and_rows_sort_naturally(
    run_dir, tmp_path
):
    write_manifest(tmp_path, RunManifest(jobs={"c": "g-0000", "e10": "g-0001", "e9": "g-0001"}))
    (tmp_path / "results").symlink_to(run_dir / "results")
    data = rundata.run_results(tmp_path)
    assert [(r["name"], r["status"]) for r in data["jobs"]] == [
        ("a", "ok"),  # records the manifest does not name still show
        ("b", "failed"),
        ("c", "canceled"),
        ("e9", "missing"),
        ("e10", "missing"),
    ]
    assert data["counts"]["missing"] == 2


def test_output_tails_come_from_the_jobs_own_files(run_dir):
    out = rundata.job_output(run_dir, "a", "out")
    assert out["exists"] and out["text"] == "out of a\n"
    err = rundata.job_output(run_dir, "b", "err", lines=1)
    assert err["text"] == "b broke\n"
    assert rundata.job_output(run_dir, "b", "out", lines=2)["text"] == "99\n100\n"
    never = rundata.job_output(run_dir, "c", "out")
    assert never["exists"] is False and never["text"] == ""


@pytest.mark.parametrize(
    ("job", "stream"),
    [("../results/g-0000", "out"), ("..", "out"), (".hidden", "err"), ("a/b", "out"), ("a", "log")],
)
def test_an_output_request_cannot_name_a_file_outside_job_output(run_dir, job, stream):
    with pytest.raises(JobForgeError):
        rundata.job_output(run_dir, job, stream)


def test_a_run_dir_the_server_cannot_see_is_said_so(tmp_path):
    with pytest.raises(JobForgeError, match="does not exist on the Airflow API server's host"):
        rundata.run_results(tmp_path / "on-the-cluster")


def test_the_report_is_found_when_the_run_has_one(run_dir, tmp_path):
    assert rundata.report_file(run_dir) is None
    (tmp_path / "report.html").write_text("<html></html>")
    assert rundata.report_file(tmp_path) == tmp_path / "report.html"
    assert rundata.run_results(tmp_path)["report"] is True


def test_run_dir_comes_from_the_summary_else_from_any_submit_task_with_its_jobs():
    def submit(output_dir: str, batch: str, *names: str) -> dict:
        jobs = [{"name": n, "command": "true"} for n in names]
        request = {"output_dir": output_dir, "batch": {"batch": batch, "jobs": jobs}}
        return {"job_id": "1", "request": request}

    entries = [
        ("short.job_submit_0001", "return_value", {"request": {"output_dir": "/wrong"}}),
        ("short.submit_0000", "return_value", submit("/out/run1", "short-0000", "a", "b")),
        ("submit_0001", "return_value", submit("/out/run1", "g-0001", "c")),
        ("short.job_a", "return_value", None),
    ]
    assert rundata.find_run_dir(entries) == (
        "/out/run1",
        {"a": "short-0000", "b": "short-0000", "c": "g-0001"},
    )
    with_summary = [*entries, ("summary", "run_dir", "/out/from-summary")]
    assert rundata.find_run_dir(with_summary)[0] == "/out/from-summary"
    assert rundata.find_run_dir([("setup", "return_value", 0)]) == (None, {})


def test_a_resubmit_keeps_the_runs_params_and_names_the_run_it_repairs():
    earlier = {"partition": "debug", "rerun_of": "older", "rerun": ["canceled"], "jobs": ["s*"]}
    assert rundata.rerun_conf("run-2", earlier) == {
        "partition": "debug",
        "jobs": ["s*"],
        "rerun_of": "run-2",
        "rerun": ["failed", "missing"],
    }
    assert rundata.rerun_conf("r", None, ["canceled", "canceled"])["rerun"] == ["canceled"]
    with pytest.raises(JobForgeError, match="rerun"):
        rundata.rerun_conf("r", None, ["succeeded"])


def test_the_plugin_adds_a_dag_run_tab_over_its_own_app():
    from airflow.plugins_manager import AirflowPlugin

    JobforgePlugin.validate()  # what the plugins manager checks of a plugin class
    assert issubclass(JobforgePlugin, AirflowPlugin) and JobforgePlugin.name == "jobforge"
    assert JobforgePlugin.external_views == [RESULTS_VIEW]
    assert RESULTS_VIEW["destination"] == "dag_run"
    assert RESULTS_VIEW["href"] == "/jobforge/dags/{DAG_ID}/runs/{RUN_ID}"
    (mounted,) = JobforgePlugin().fastapi_apps
    assert mounted["url_prefix"] == URL_PREFIX
    paths = {route.path for route in mounted["app"].routes}
    run = "/dags/{dag_id}/runs/{run_id}"
    assert paths == {
        run,
        f"{run}/data",
        f"{run}/jobs/{{job}}/{{stream}}",
        f"{run}/report",
        f"{run}/resubmit",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("GET", "/data"),
        ("GET", "/jobs/a/out"),
        ("GET", "/report"),
        ("POST", "/resubmit"),
    ],
)
def test_every_route_wants_an_airflow_user(method, path):
    from fastapi.testclient import TestClient

    from airflow_jobforge.plugins.app import create_app

    with TestClient(create_app()) as client:
        response = client.request(method, "/dags/d/runs/r" + path)
    assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"})
