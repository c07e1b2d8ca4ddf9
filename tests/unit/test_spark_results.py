"""Spark in a run's results: `jobforge stats`, the HTML report and `results show` on a run dir
holding a real event log (tests/fixtures/spark: a PySpark word count named "wc", run by a
standalone cluster with 1 executor of 2 cores) and a batch's cluster.json, as the node runner
leaves them. No Spark is needed: only the files are read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from airflow_jobforge.results.report import report_html
from airflow_jobforge.results.show import load_run, show_json, show_table
from airflow_jobforge.results.stats import (
    format_stats,
    gather_stats,
    spark_app_state,
    stats_to_dict,
)
from airflow_jobforge.rundir import ResultRecord, ResultsWriter, results_file
from airflow_jobforge.rundir.spark import (
    ClusterInfo,
    app_ids,
    job_events_dir,
    read_app,
    write_cluster_info,
)

EVENT_LOG = Path(__file__).parent.parent / "fixtures" / "spark" / "app-20261203142008-0000"
APP = EVENT_LOG.name
BATCH = "spark-0000"
JOB = "count"
# The recorded application's start and end (its event log's timestamps, in seconds).
APP_START, APP_END = 1796307607.747, 1796307614.148
CLUSTER = ClusterInfo(
    batch=BATCH,
    master_url="spark://node1:7077",
    web_ui="http://node1:8080",
    master_host="node1",
    nodes=["node1", "node2"],
    workers_alive=2,
    cores=8,
    memory_mb=4096,
    started=APP_START - 10,
    ready=APP_START - 5.75,
    hpc_job_id="4515",
)


def write_records(run_dir: Path, *records: ResultRecord) -> None:
    writer = ResultsWriter(results_file(run_dir, BATCH))
    try:
        for record in records:
            writer.append(record)
    finally:
        writer.close()


def job_record(name: str = JOB, spark_apps: list[str] | None = None) -> ResultRecord:
    return ResultRecord(
        name,
        "finished",
        0,
        9.0,
        APP_START - 1,
        APP_START + 8,
        BATCH,
        hpc_job_id="4515",
        host="node1",
        spark_apps=spark_apps,
    )


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A batch that started a cluster and whose job `count` ran the recorded application,
    beside a job without Spark."""
    run = tmp_path / "run"
    write_records(run, job_record(spark_apps=[APP]), job_record("plain"))
    events = job_events_dir(run, BATCH, JOB)
    events.mkdir(parents=True)
    shutil.copy(EVENT_LOG, events / APP)
    write_cluster_info(run, CLUSTER)
    return run


def test_gather_stats_reads_the_application_and_the_cluster(run_dir):
    stats = gather_stats(run_dir)
    [app] = stats.spark_apps
    assert (app.app_id, app.name, app.batch, app.job) == (APP, "wc", BATCH, JOB)
    assert (app.executors, app.executor_cores, app.exit_code) == (1, 2, 0)
    assert app.duration_s == 6.401 and app.complete
    [cluster] = stats.spark_clusters
    assert cluster == CLUSTER and cluster.start_s == 4.25


def test_format_stats_shows_a_cluster_table_and_an_application_table(run_dir):
    text = format_stats(gather_stats(run_dir))
    lines = text.splitlines()
    clusters = lines.index("Spark clusters:")
    assert lines[clusters + 1].split() == ["batch", "nodes", "workers", "alive", "cores"] + [
        "memory",
        "start",
    ]
    assert lines[clusters + 2].split() == [BATCH, "2", "2", "8", "4.0", "GiB", "4.25s"]
    apps = lines.index("Spark applications:")
    assert lines[apps + 1].split() == ["job", "app", "id", "name", "duration"] + [
        "executors",
        "cores",
        "exit",
        "code",
    ]
    assert lines[apps + 2].split() == [JOB, APP, "wc", "6.40s", "1", "2", "0"]
    assert "left after the stop" not in text


def test_stats_to_dict_holds_every_application_and_cluster(run_dir):
    data = json.loads(json.dumps(stats_to_dict(gather_stats(run_dir))))
    [app] = data["spark_apps"]
    assert app["app_id"] == APP and app["name"] == "wc" and app["job"] == JOB
    assert (app["executors"], app["executor_cores"], app["duration_s"]) == (1, 2, 6.401)
    assert app["complete"] is True and app["exit_code"] == 0
    [cluster] = data["spark_clusters"]
    assert cluster["master_url"] == "spark://node1:7077" and cluster["start_s"] == 4.25
    assert cluster["nodes"] == ["node1", "node2"] and cluster["workers_alive"] == 2


def test_the_report_has_both_tables(run_dir):
    page = report_html(gather_stats(run_dir))
    assert "<h2>Spark clusters</h2>" in page and "<h2>Spark applications</h2>" in page
    assert f'<td>{APP}</td><td>wc</td><td class="n">6.40s</td>' in page
    assert f'<td>{BATCH}</td><td class="n">2</td>' in page


def test_a_run_without_spark_shows_no_spark_tables(tmp_path):
    write_records(tmp_path, job_record())
    stats = gather_stats(tmp_path)
    assert stats.spark_apps == [] and stats.spark_clusters == []
    assert "Spark" not in format_stats(stats)
    assert "Spark" not in report_html(stats)
    data = stats_to_dict(stats)
    assert data["spark_apps"] == [] and data["spark_clusters"] == []


def test_spark_processes_left_after_the_stop_are_named(run_dir):
    write_cluster_info(run_dir, ClusterInfo(**{**CLUSTER.__dict__, "leftover": ["node2:4711"]}))
    stats = gather_stats(run_dir)
    line = f"Spark processes left after the stop of {BATCH}'s cluster: node2:4711"
    assert line in format_stats(stats).splitlines()
    assert f"<p>{line.replace(chr(39), '&#x27;')}</p>" in report_html(stats)


def test_an_inprogress_log_is_running_while_its_job_runs_and_else_incomplete(run_dir):
    events = job_events_dir(run_dir, BATCH, JOB)
    (events / APP).rename(events / f"{APP}.inprogress")
    app = read_app(events / f"{APP}.inprogress", BATCH, JOB)
    assert app is not None and app.app_id == APP and not app.complete
    stats = gather_stats(run_dir)
    [app] = stats.spark_apps
    assert not app.complete
    assert spark_app_state(stats, app) == "incomplete"  # the job's record ended after it
    lines = format_stats(stats).splitlines()
    row = lines[lines.index("Spark applications:") + 2]
    assert row.split() == [JOB, APP, "wc", "6.40s", "1", "2", "incomplete"]
    stats.records.pop(JOB)
    assert spark_app_state(stats, app) == "running"


def test_a_truncated_last_line_does_not_stop_the_reader(tmp_path):
    data = EVENT_LOG.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    assert b"SparkListenerApplicationEnd" in data[last:]
    path = tmp_path / f"{APP}.inprogress"
    path.write_bytes(data[: last + (len(data) - last) // 2])
    app = read_app(path, BATCH, JOB)
    assert app is not None
    assert (app.name, app.executors, app.executor_cores) == ("wc", 1, 2)
    assert app.start == APP_START and app.end is None and app.duration_s is None
    assert not app.complete and app.exit_code is None


def test_app_ids_since_keeps_the_logs_written_at_or_after_it(tmp_path):
    now = 1_800_000_000.0
    names = {
        "app-20261203140000-0000": now - 600,  # an earlier run of the job in this batch
        "app-20261203142008-0001": now + 5,
        "app-20261203142008-0002.inprogress": now + 30,
        "app-20261203142008-0003.lz4": now + 20,
        "notes.txt": now + 40,
    }
    for name, mtime in names.items():
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (mtime, mtime))
    everything = [
        "app-20261203140000-0000",
        "app-20261203142008-0001",
        "app-20261203142008-0003",
        "app-20261203142008-0002",
    ]
    assert app_ids(tmp_path) == everything
    assert app_ids(tmp_path, since=now) == everything[1:]
    assert app_ids(tmp_path, since=now + 25) == ["app-20261203142008-0002"]
    assert app_ids(tmp_path / "absent", since=now) == []


def test_results_show_has_a_spark_column_only_for_runs_with_spark(run_dir, tmp_path):
    run = load_run(run_dir)
    header, *rows = show_table(run, run.names).splitlines()
    assert header.split()[-2:] == ["spark", "reason"]
    assert next(r for r in rows if r.startswith(JOB)).split()[-1] == APP
    assert next(r for r in rows if r.startswith("plain")).split()[-1] == "node1"  # no app
    jobs = {j["name"]: j for j in show_json(run, run.names)["jobs"]}
    assert jobs[JOB]["spark_apps"] == [APP] and jobs["plain"]["spark_apps"] is None

    two = tmp_path / "two"
    write_records(two, job_record(spark_apps=[APP, "app-20261203142008-0001"]))
    run = load_run(two)
    assert show_table(run, run.names).splitlines()[1].endswith(f"{APP} (+1)")

    none = tmp_path / "none"
    write_records(none, job_record())
    run = load_run(none)
    assert "spark" not in show_table(run, run.names).splitlines()[0]
