"""`jobforge results show` and `jobforge events` on real run dirs made by the direct runner."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from airflow_jobforge.cli.main import main
from airflow_jobforge.config import dump_config, load_config
from airflow_jobforge.config.models import JobConfiguration
from airflow_jobforge.local.direct import run_locally
from airflow_jobforge.results.show import human_bytes, load_run, monitor_peaks
from airflow_jobforge.rundir import ResultRecord, ResultsWriter, results_file
from airflow_jobforge.rundir.events import BATCH_SUBMITTED, JOB_FAILED, EventLog
from airflow_jobforge.rundir.manifest import MANIFEST

JOBS = [
    {"name": "prepare", "command": "echo preparing"},
    {
        "name": "simulate",
        "command": "echo 'reading input.csv' >&2; echo 'ValueError: column x' >&2; exit 3",
        "blocked_by": ["prepare"],
    },
    {
        "name": "plot",
        "command": "echo plot",
        "blocked_by": ["simulate"],
        "cancel_on_blocking_job_failure": True,
    },
    {
        "name": "report",
        "command": "echo report",
        "blocked_by": ["plot"],
        "cancel_on_blocking_job_failure": True,
    },
    {"name": "archive", "command": "echo archive", "blocked_by": ["simulate"]},
]


def make_run(directory, jobs) -> tuple:
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "config.json"
    dump_config(JobConfiguration.model_validate({"jobs": jobs}), config_file)
    out = directory / "out"
    run_locally(load_config(config_file), out, progress=lambda _: None, config_file=config_file)
    return config_file, out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("pipeline"), JOBS)[1]


@pytest.fixture
def run_dir(pristine, tmp_path):
    """A private copy: tests append records and events to it."""
    return shutil.copytree(pristine, tmp_path / "run")


def show(capsys, *argv: str) -> tuple[int, str]:
    code = main(["results", "show", *argv])
    return code, capsys.readouterr().out


def test_a_run_with_a_failed_job_shows_the_four_counts_and_exits_1(run_dir, capsys):
    code, out = show(capsys, str(run_dir))
    assert code == 1
    assert out.rstrip().endswith("5 jobs: 2 successful, 1 failed, 2 canceled, 0 missing")


def test_the_table_has_a_row_per_job_and_the_failed_jobs_stderr_tail(run_dir, capsys):
    _, out = show(capsys, str(run_dir))
    lines = [line for line in out.splitlines()[2:] if line and not line[0].isspace()]
    rows = {line.split()[0]: line.split()[1:] for line in lines[:5]}
    assert {name: cells[0] for name, cells in rows.items()} == {
        "archive": "ok",
        "plot": "canceled",
        "prepare": "ok",
        "report": "canceled",
        "simulate": "failed",
    }
    assert rows["simulate"][1] == "3" and rows["simulate"][3] == "default-0000"
    assert "| ValueError: column x" in out
    assert "blocking job 'simulate' did not succeed" in out


def test_a_run_where_every_job_succeeded_exits_0(tmp_path, capsys):
    _, out = make_run(
        tmp_path, [{"name": "a", "command": "true"}, {"name": "b", "command": "true"}]
    )
    code, text = show(capsys, str(out))
    assert code == 0 and "2 jobs: 2 successful, 0 failed, 0 canceled, 0 missing" in text


def test_the_output_root_means_its_newest_run(run_dir, tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(run_dir, root / "old")
    time.sleep(0.01)
    newest = shutil.copytree(run_dir, root / "new")
    (newest / "results").touch()
    code, out = show(capsys, str(root))
    assert code == 1 and out.splitlines()[0] == f"Run: {newest}"


def test_status_filter_lists_only_jobs_in_those_states(run_dir, capsys):
    code, out = show(capsys, str(run_dir), "--status", "failed,canceled")
    listed = [line.split()[0] for line in out.splitlines()[2:] if line and line[0] != " "]
    assert code == 1
    assert listed[:3] == ["simulate", "plot", "report"], "in run order"
    assert "archive" not in listed


def test_an_unknown_status_is_a_usage_error(run_dir, capsys):
    assert main(["results", "show", str(run_dir), "--status", "broken"]) == 2
    assert "unknown status 'broken'" in capsys.readouterr().err


def test_json_holds_the_counts_and_every_job_with_its_raw_status(run_dir, capsys):
    code, out = show(capsys, str(run_dir), "--json")
    document = json.loads(out)
    assert code == 1
    assert document["counts"] == {
        "total": 5,
        "successful": 2,
        "failed": 1,
        "canceled": 2,
        "missing": 0,
    }
    jobs = {job["name"]: job for job in document["jobs"]}
    assert jobs["simulate"]["state"] == "failed" and jobs["simulate"]["status"] == "finished"
    assert jobs["simulate"]["return_code"] == 3
    assert jobs["simulate"]["stderr_tail"].endswith("ValueError: column x\n")
    assert jobs["plot"]["status"] == "canceled" and jobs["plot"]["batch"] == "default-0000"
    assert "stderr_tail" not in jobs["archive"]


def test_a_cleared_jobs_rerun_record_wins_over_its_first_one(run_dir, capsys):
    first = load_run(run_dir).records["simulate"]
    writer = ResultsWriter(results_file(run_dir, "default-0000-rerun2-abcdef01"))
    writer.append(
        ResultRecord(
            "simulate", "finished", 0, 1.0, first.end + 5, first.end + 6, "default-0000-rerun2"
        )
    )
    writer.close()
    code, out = show(capsys, str(run_dir), "--json")
    jobs = {job["name"]: job for job in json.loads(out)["jobs"]}
    assert jobs["simulate"]["state"] == "ok" and jobs["simulate"]["return_code"] == 0
    assert json.loads(out)["counts"]["failed"] == 0


def test_a_manifest_job_without_a_record_is_missing(run_dir, capsys):
    manifest = json.loads((run_dir / MANIFEST).read_text())
    manifest["jobs"]["never-ran"] = "default-0001"
    (run_dir / MANIFEST).write_text(json.dumps(manifest))
    code, out = show(capsys, str(run_dir), "--status", "missing")
    assert code == 1
    assert out.splitlines()[2].split() == [
        "never-ran",
        "missing",
        "default-0001",
        "no",
        "result",
        "record",
    ]
    assert "6 jobs: 2 successful, 1 failed, 2 canceled, 1 missing" in out


def test_without_a_manifest_batch_files_and_submit_events_name_the_expected_jobs(run_dir, capsys):
    (run_dir / MANIFEST).unlink()
    EventLog(run_dir, "airflow").emit(
        BATCH_SUBMITTED,
        batch="default-0001",
        hpc_job_id="77",
        data={"jobs": ["queued-1", "queued-2"], "tag": "0123456789ab.default-0001.t1"},
    )
    run = load_run(run_dir)
    assert run.expected["queued-1"] == "default-0001" and run.expected["prepare"] == "default-0000"
    assert str(run.summary()) == "7 jobs: 2 successful, 1 failed, 2 canceled, 2 missing"


def test_peak_memory_comes_from_the_monitor_when_the_record_lacks_it(run_dir, capsys):
    older_runner = ResultsWriter(results_file(run_dir, "default-0000-rerun2-abcdef01"))
    now = time.time()
    older_runner.append(ResultRecord("prepare", "finished", 0, 1.0, now, now, "default-0000"))
    older_runner.close()
    (run_dir / "monitor").mkdir()
    (run_dir / "monitor" / "default-0000.jsonl").write_text(
        '{"kind":"job","job":"prepare","t":1,"peak_rss_bytes":1048576}\n'
        '{"kind":"node","t":1,"mem_used_bytes":9}\n'
        '{"kind":"job","job":"prepare","t":2,"peak_rss_bytes":3145728}\n'
        '{"kind":"job","job":"prepare","t":3,"peak_rss_bytes":2097152}\n'
        '{"kind":"job","job":"simul'
    )
    code, out = show(capsys, str(run_dir))
    header, prepare = (
        out.splitlines()[1],
        next(line for line in out.splitlines() if line.startswith("prepare")),
    )
    assert "peak_mem" in header and "3.0M" in prepare
    assert monitor_peaks(run_dir, ["prepare", "simulate"]) == {"prepare": 3145728}


def test_a_records_own_peak_memory_wins_over_monitor_samples(run_dir):
    (run_dir / "monitor").mkdir()
    (run_dir / "monitor" / "default-0000.jsonl").write_text(
        '{"kind":"job","t":1,"job":"archive","peak_rss_bytes":5}\n'
    )
    writer = ResultsWriter(results_file(run_dir, "default-0000"))
    writer.append(
        ResultRecord(
            "archive",
            "finished",
            0,
            1.0,
            time.time(),
            time.time(),
            "default-0000",
            host="node7",
            max_rss_bytes=2 * 1024**3,
        )
    )
    writer.close()
    run = load_run(run_dir)
    assert run.peak_rss_bytes("archive") == 2 * 1024**3 and human_bytes(2 * 1024**3) == "2.0G"


def test_a_large_run_lists_what_did_not_succeed_and_all_lists_every_job(tmp_path, capsys):
    jobs = [{"name": f"j{i:03d}", "command": "true"} for i in range(60)]
    jobs[17]["command"] = "exit 1"
    _, out_dir = make_run(tmp_path, jobs)
    code, out = show(capsys, str(out_dir))
    lines = out.splitlines()
    assert code == 1 and lines[2].startswith("j017") and "failed" in lines[2]
    assert "(59 successful jobs not listed)" in out and "--all lists every job" in out
    _, everything = show(capsys, str(out_dir), "--all")
    assert sum(line.startswith("j0") for line in everything.splitlines()) == 60


def test_events_are_merged_in_time_order_and_filtered_by_type_and_job(run_dir, capsys):
    EventLog(run_dir, "b").emit(JOB_FAILED, t=2.0, batch="default-0000", job="simulate")
    EventLog(run_dir, "a").emit(BATCH_SUBMITTED, t=1.0, batch="default-0000", hpc_job_id="41")
    EventLog(run_dir, "a").emit(JOB_FAILED, t=3.0, batch="default-0000", job="other")
    assert main(["events", str(run_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # The runner's own events (batch_started...) come now, after these 1970 ones.
    assert [line.split()[2] for line in lines[:3]] == [BATCH_SUBMITTED, JOB_FAILED, JOB_FAILED]
    assert main(["events", str(run_dir), "--type", JOB_FAILED, "--job", "simulate", "--json"]) == 0
    chosen = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(e["type"], e["job"]) for e in chosen} == {(JOB_FAILED, "simulate")}
    assert chosen[0]["t"] == 2.0, "ours and the runner's, in time order"


def test_an_unknown_event_type_is_a_usage_error(run_dir, capsys):
    assert main(["events", str(run_dir), "--type", "batch_exploded"]) == 2
    err = capsys.readouterr().err
    assert "unknown event type 'batch_exploded'" in err and BATCH_SUBMITTED in err


def test_a_directory_that_holds_no_run_is_a_usage_error(tmp_path, capsys):
    assert main(["results", "show", str(tmp_path)]) == 2
    assert "neither a run directory" in capsys.readouterr().err
