"""`jobforge stats` on batches the real cluster ran (sacct efficiency), and the HTML report in
a real headless Chromium: every plot drawn, no script error, nothing fetched from a network."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

from airflow_jobforge.cli.main import main
from airflow_jobforge.config import SlurmParams
from airflow_jobforge.config.models import (
    BatchingParams,
    Job,
    JobConfiguration,
    MonitorParams,
    SubmissionGroup,
)
from airflow_jobforge.local.direct import run_locally
from airflow_jobforge.results.report import build_report
from airflow_jobforge.results.stats import read_efficiency
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.slurm.script import SubmitRequest
from airflow_jobforge.slurm.tags import submit_tag
from airflow_jobforge.slurm.usage import parse_sacct_usage
from tests.deployment.browser import chromium, screenshot_dir

from .conftest import wait_terminal


def busy_loop(seconds: float) -> str:
    return f"python3 -c 'import time\nt = time.time()\nwhile time.time() - t < {seconds}: pass'"


FIXTURE = Path(__file__).parent.parent / "fixtures" / "sacct_usage" / "usage_finished.txt"


def submit(local, run_dir: Path, key: str, batch: str, command: str):
    spec = BatchSpec(batch, (JobSpec(f"{batch}-job", command),), monitor_interval_s=0.5)
    return local.client.submit(
        SubmitRequest(
            tag=submit_tag(key, batch, 1),
            batch=spec,
            slurm=SlurmParams(walltime="5", mem="200M"),
            output_dir=str(run_dir),
            python=sys.executable,
        )
    )


@pytest.mark.slurm
def test_stats_show_the_sacct_efficiency_of_a_busy_and_an_idle_batch(local, capsys):
    run_dir = local.output_dir()
    key = uuid.uuid4().hex[:12]  # a run key of its own: an earlier run's tag would be adopted
    busy = submit(local, run_dir, key, "g-0000", busy_loop(8))
    idle = submit(local, run_dir, key, "g-0001", "sleep 5")
    for job in (busy, idle):
        wait_terminal(local.client, job)
    deadline = time.monotonic() + 60
    while True:  # accounting lags the job's end by a few seconds
        usage = local.client.usage([busy.job_id, idle.job_id])
        if all(u.ended and u.max_rss_bytes for u in usage.values()) and len(usage) == 2:
            break
        assert time.monotonic() < deadline, f"sacct never completed the usage: {usage}"
        time.sleep(1)

    assert main(["stats", str(run_dir)]) == 0
    out = capsys.readouterr().out
    print(out)
    table = out.split("Efficiency per batch (sacct):\n")[1].split("Totals:")[0]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    busy_row, idle_row = rows["g-0000"], rows["g-0001"]
    assert busy_row[1:3] == [busy.job_id, "COMPLETED"]
    assert float(busy_row[5].rstrip("%")) > 50
    assert float(idle_row[5].rstrip("%")) < 10
    assert float(busy_row[-1]) > 0 and busy_row[8:10] == ["200.0", "MiB"]
    assert "node-hours" in out and "Node use (resource monitor):" in out
    assert set(read_efficiency(run_dir)) == {busy.job_id, idle.job_id}


def test_the_report_opens_in_headless_chromium_with_every_plot_drawn(tmp_path):
    config = JobConfiguration(
        jobs=[
            Job(name="busy", command=busy_loop(1.5)),
            Job(name="quick", command="true"),
            Job(name="bad", command="exit 3"),
        ],
        submission_groups=[
            SubmissionGroup(
                name="g",
                batching=BatchingParams(num_processes=2),
                monitor=MonitorParams(interval_s=0.2),
            )
        ],
    )
    run_dir = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_JOB_ID", "4515")  # as if SLURM ran it: its recorded sacct usage
        run_locally(config, run_dir, progress=lambda _: None)
    usage = parse_sacct_usage(FIXTURE.read_text())
    report = build_report(run_dir, {"4515": usage["4515"]})

    with chromium(report.as_uri()) as browser:
        browser.driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument",
            {
                "source": "window.__errors = [];"
                "addEventListener('error', e => __errors.push(String(e.message)));"
            },
        )
        browser.driver.get(report.as_uri())
        plots = browser.wait(
            lambda d: browser.script(
                "const divs = [...document.querySelectorAll('.plotly-graph-div')];"
                "return divs.every(d => d.querySelector('.main-svg .trace')) ? "
                "divs.map(d => d.id) : null;"
            ),
            "every plot drawn with its traces",
        )
        assert sorted(plots) == sorted(
            [
                "batch-efficiency",
                "node-cpu",
                "node-mem",
                "job-peak-mem",
                "job-run-time",
                "job-timeline",
            ]
        )
        assert browser.script("return window.__errors") == []
        fetched = browser.script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => !n.startsWith('file:') && !n.startsWith('data:'))"
        )
        assert fetched == []
        assert "4515" in browser.text() and "COMPLETED" in browser.text()
        path = browser.screenshot("report.png")
        browser.reveal(browser.by_id("job-timeline"))
        browser.screenshot("report-timeline.png")
    assert path == screenshot_dir() / "report.png" and path.stat().st_size > 10_000
