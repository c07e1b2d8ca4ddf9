"""`jobforge stats` and the HTML report on a real run: a configuration run on this machine by
the node runner (records, job output, the resource monitor's samples), with what sacct said
about a real SLURM job recorded in tests/fixtures/sacct_usage."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from airflow_jobforge.cli.main import main
from airflow_jobforge.config.models import (
    BatchingParams,
    Job,
    JobConfiguration,
    MonitorParams,
    SubmissionGroup,
)
from airflow_jobforge.local.direct import run_locally
from airflow_jobforge.results.report import (
    MAX_TIMELINE_ROWS,
    build_report,
    report_html,
    timeline_rows,
    write_report,
)
from airflow_jobforge.results.stats import (
    RunStats,
    format_stats,
    gather_stats,
    read_efficiency,
    run_job_ids,
    slurm_jobs,
    stats_to_dict,
)
from airflow_jobforge.rundir.records import ResultRecord, summarize
from airflow_jobforge.slurm.usage import parse_sacct_usage

USAGE = Path(__file__).parent.parent / "fixtures" / "sacct_usage"
# sbatch -c 2 --mem-per-cpu=100M: 6 s elapsed, 9.618 s CPU, MaxRSS 13004800
MULTI = parse_sacct_usage((USAGE / "usage_finished_noconvert.txt").read_text())["4515"]
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 1.2: pass"
HOG = "x = b'x' * (60 * 1024 * 1024)\nimport time\ntime.sleep(0.8)"
PLOTS = ("node-cpu", "node-mem", "job-peak-mem", "job-run-time", "job-timeline")


def config() -> JobConfiguration:
    return JobConfiguration(
        jobs=[
            Job(name="busy", command=f'python3 -c "{BUSY}"'),
            Job(name="hog", command=f'python3 -c "{HOG}"'),
            Job(name="bad", command="echo broken >&2; exit 3"),
            Job(name="after-bad", command="true", blocked_by=("bad",)),
        ],
        submission_groups=[
            SubmissionGroup(
                name="g",
                batching=BatchingParams(per_node_batch_size=10, num_processes=2),
                monitor=MonitorParams(interval_s=0.2),
            )
        ],
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One batch run as SLURM job 4515 would have run it (the runner reads SLURM_JOB_ID)."""
    out = tmp_path_factory.mktemp("run") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_JOB_ID", "4515")
        run_locally(config(), out, progress=lambda _: None)
    return out


@pytest.fixture
def local_run(tmp_path) -> Path:
    out = tmp_path / "out"
    run_locally(config(), out, progress=lambda _: None)
    return out


def test_stats_count_the_jobs_and_give_the_batch_its_sacct_efficiency(run):
    stats = gather_stats(run, {"4515": MULTI})
    assert str(stats.summary) == "4 jobs: 3 successful, 1 failed, 0 canceled, 0 missing"
    assert [(j.batch, j.job_id) for j in stats.slurm_jobs] == [("g-0000", "4515")]
    text = format_stats(stats)
    row = next(line for line in text.splitlines() if line.startswith("g-0000"))
    assert row.split() == [
        "g-0000", "4515", "COMPLETED", "0:00:06", "2", "80.2%", "12.4", "MiB", "200.0", "MiB",
        "6.2%", "0.0017",
    ]  # fmt: skip
    assert "Totals: 1 SLURM jobs, 0.0017 node-hours; CPU 0.0027 of 0.0033 CPU-hours" in text


def test_stats_list_run_times_and_the_jobs_with_the_highest_peak_memory(run):
    stats = gather_stats(run)
    summary = stats_to_dict(stats, top=2)["jobs"]
    assert summary["ran"] == 4
    assert summary["run_time_s"]["max"] >= 1.2
    assert [p["job"] for p in summary["peak_rss"]][0] == "hog"
    assert summary["peak_rss"][0]["peak_rss_bytes"] > 60 * 1024 * 1024
    assert len(summary["peak_rss"]) == 2


def test_the_monitor_samples_give_node_use_over_time(run):
    stats = gather_stats(run)
    (series,) = stats.node_series
    assert series.batch == "g-0000" and len(series.t) >= 3
    assert series.t == sorted(series.t)
    assert 0 <= min(series.cpu_pct) and max(series.cpu_pct) <= 100
    assert stats.monitor_peaks["hog"] > 60 * 1024 * 1024
    assert "Node use (resource monitor):" in format_stats(stats)


def test_a_torn_monitor_line_is_skipped_and_the_rest_still_read(local_run):
    path = local_run / "monitor" / "g-0000.jsonl"
    before = len(gather_stats(local_run).node_series[0].t)
    with path.open("a") as handle:
        handle.write('{"t": 1, "kind": "node", "cpu_p\n{"kind": "node", "t": 2}\n{"t": 3, "ki')
    assert len(gather_stats(local_run).node_series[0].t) == before


def test_build_report_saves_what_sacct_said_so_later_stats_need_no_sacct(run):
    path = build_report(run, {"4515": MULTI})
    assert path == run / "report.html" and path.stat().st_size > 1_000_000
    assert read_efficiency(run) == {"4515": MULTI}
    assert gather_stats(run).usage == {"4515": MULTI}
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temp left


def test_a_job_id_the_controller_gave_to_another_job_gets_no_usage(tmp_path):
    """Usage is kept only when sacct's job name is the batch's (jf-<tag>)."""
    slurm = tmp_path / "slurm"
    slurm.mkdir(parents=True)
    (slurm / "jf-0123456789ab.g-0000.t1-4515.out").write_text("")
    stats = gather_stats(tmp_path, {"4515": MULTI})  # MULTI is named usage-multi
    assert [j.job_id for j in stats.slurm_jobs] == ["4515"] and stats.usage == {}


def test_slurm_jobs_come_from_the_slurm_files_too_so_a_killed_try_is_listed(tmp_path):
    slurm = tmp_path / "slurm"
    slurm.mkdir()
    for name in (
        "jf-0123456789ab.g-0001.t1-4516.out",  # killed for memory: no exit file, no record
        "jf-0123456789ab.g-0001.t2-4520.exit",
        "jf-0123456789ab.g-0001.t2-4520.out",
        "jf-0123456789ab.g-0000.t1-local-912.exit",
        "unrelated.txt",
    ):
        (slurm / name).write_text("")
    jobs = slurm_jobs(tmp_path, {})
    assert [(j.batch, j.job_id, j.job_name) for j in jobs] == [
        ("g-0000", "local-912", "jf-0123456789ab.g-0000.t1"),
        ("g-0001", "4516", "jf-0123456789ab.g-0001.t1"),
        ("g-0001", "4520", "jf-0123456789ab.g-0001.t2"),
    ]
    assert run_job_ids(tmp_path) == ["4516", "4520"]  # sacct cannot know local ids


def test_the_report_is_one_file_with_every_plot_and_nothing_fetched(run):
    stats = gather_stats(run, {"4515": MULTI})
    page = report_html(stats)
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    assert page.count(bundle) == 1
    rest = page.replace(bundle, "")
    for div in (*PLOTS, "batch-efficiency"):
        assert f'id="{div}"' in rest
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", rest)
    assert "<link" not in rest and "@import" not in rest
    assert "All 4 jobs that ran." in rest
    assert "<td>4515</td>" in rest and "<td>COMPLETED</td>" in rest


def test_a_report_without_sacct_or_monitor_data_says_so(tmp_path):
    record = ResultRecord("a", "finished", 0, 1.0, 100.0, 101.0, "g-0000")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "g-0000.jsonl").write_text(record.to_json() + "\n")
    page = report_html(gather_stats(tmp_path))
    assert "No accounting data" in page and "No monitor samples in this run." in page
    assert 'id="job-timeline"' in page and 'id="node-cpu"' not in page


def synthetic(n: int, failed_every: int) -> RunStats:
    records = {}
    for i in range(n):
        start = 1.79e9 + i * 0.05
        name = f"j{i:06d}"
        records[name] = ResultRecord(
            name, "finished", int(i % failed_every == 0), 1 + i % 7, start, start + 1 + i % 7,
            f"g-{i // 1000:04d}", host="vm", max_rss_bytes=(10 + i % 50) << 20,
        )  # fmt: skip
    return RunStats(Path("/tmp/big"), records, summarize(records.values()), [], {}, [], {})


def test_a_100000_job_run_gives_a_usable_report_whose_timeline_keeps_every_failure():
    stats = synthetic(100_000, failed_every=1000)
    rows = timeline_rows(stats.records)
    assert len(rows) == MAX_TIMELINE_ROWS
    assert sum(not r.succeeded for r in rows) == 100
    started = time.monotonic()
    page = report_html(stats)
    assert time.monotonic() - started < 30
    assert len(page) < 15_000_000
    assert f"{MAX_TIMELINE_ROWS} of 100000 jobs that ran" in page


def test_write_report_goes_where_asked_atomically(run, tmp_path):
    target = tmp_path / "elsewhere" / "r.html"
    assert write_report(run, path=target) == target
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in target.parent.iterdir()] == ["r.html"]


def test_jobforge_stats_prints_the_tables_and_writes_the_html(local_run, tmp_path, capsys):
    report = tmp_path / "report.html"
    assert main(["stats", str(local_run.parent), "--html", str(report)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Run: {local_run}\nJobs: 4 jobs: 3 successful, 1 failed")
    assert "No accounting data" in out  # the batch ran on this machine, not on SLURM
    assert f"HTML report: {report}" in out and report.stat().st_size > 1_000_000


def test_jobforge_stats_json_is_machine_readable(local_run, capsys):
    assert main(["stats", str(local_run), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"] == {
        "total": 4, "successful": 3, "failed": 1, "canceled": 0, "missing": 0,
    }  # fmt: skip
    assert data["totals"] is None and data["jobs"]["ran"] == 4


def test_jobforge_stats_of_a_bad_path_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err == f"jobforge: {tmp_path / 'nope'}: no such output directory\n"


def test_jobforge_stats_html_to_an_unwritable_place_is_one_line_and_exit_2(
    local_run, tmp_path, capsys
):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["stats", str(local_run), "--html", str(blocker / "report.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"jobforge: {blocker / 'report.html'}: cannot write the report: ")
    assert err.count("\n") == 1
