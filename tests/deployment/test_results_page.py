"""The jobforge plugin's results page, as a user meets it: the "Jobforge results" tab of a
finished pipeline run in Airflow's UI, in headless Chromium. It lists every job with the state
the run's task instances have, shows the failed job's stderr tail on click, and its "Resubmit
failed" button starts a run with conf `rerun_of` that re-runs only the failed job.
Screenshots (results_page.png, results_rerun.png) go to $JOBFORGE_ARTIFACTS/screenshots/.

The tab is the plugin's external view (destination "dag_run"): Airflow's run view at
`/dags/{dag}/runs/{run}/plugin/jobforge-results` holds the page in an iframe. Its DOM:
`#counts button[data-filter=<state>]`, rows `#jobs tbody tr[data-job][data-status]`,
`#stdout`/`#stderr` (with `data-job` once loaded), `#resubmit`, `#resubmit-result a[data-run-id]`.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, urlparse

import pytest

from airflow_jobforge.rundir import job_state

from .browser import Browser, chromium
from .runs import records, run_dag, run_dir

pytestmark = [pytest.mark.deployment, pytest.mark.slurm]

DAG = "jobforge_deploy_pipeline"
JOBS = ("prepare", "sim_1", "sim_2", "sim_3", "report", "archive")
# A job task's state -> the page's word for its job (report is skipped: sim_3 failed).
TASK_TO_JOB_STATE = {"success": "ok", "failed": "failed", "skipped": "canceled"}


def job_task(name: str) -> str:
    return f"{'long' if name in ('report', 'archive') else 'short'}.job_{name}"


@pytest.fixture(scope="module")
def browser(deployment) -> Iterator[Browser]:
    """Requested first, so that a missing browser skips (or under CI=true fails) before the
    pipeline runs."""
    with chromium(deployment.base_url) as b:
        b.login(deployment.token)
        yield b


@pytest.fixture(scope="module")
def finished_run(browser, deployment, workload) -> tuple[str, dict[str, str | None]]:
    """A pipeline run of its own, finished, in which sim_3 failed; the api-server carries the
    plugin (it loads plugins when it starts)."""
    plugins = {p["name"] for p in deployment.paged("/api/v2/plugins", "plugins")}
    assert "jobforge" in plugins, (
        f"the api-server has no jobforge plugin (plugins: {sorted(plugins)}): install the "
        "package, then restart it: scripts/airflow/stop.sh --only api-server && "
        "scripts/airflow/start.sh"
    )
    run_id, state = run_dag(deployment, DAG)
    states = deployment.task_states(DAG, run_id)
    assert state == "failed" and states["short.job_sim_3"] == "failed", states
    return run_id, states


def run_path(run_id: str) -> str:
    return f"/dags/{DAG}/runs/{quote(run_id, safe='')}"


def open_results_tab(browser: Browser, run_id: str) -> None:
    """Airflow's view of the run, on the plugin's tab; the browser then works inside the
    tab's iframe."""
    browser.driver.switch_to.default_content()
    browser.open(run_path(run_id) + "/plugin/jobforge-results")
    frame = browser.wait(
        lambda d: browser.css("iframe[title='Jobforge results']"), "the Jobforge results tab"
    )[0]
    assert frame.get_attribute("src").endswith(f"/jobforge{run_path(run_id)}")
    browser.driver.switch_to.frame(frame)
    browser.wait(lambda d: browser.css("#jobs tbody tr"), "the job table")


def shown_rows(browser: Browser) -> dict[str, str]:
    return {
        row.get_attribute("data-job"): row.get_attribute("data-status")
        for row in browser.css("#jobs tbody tr")
    }


def test_results_tab_lists_every_job_with_its_state_and_shows_the_failed_jobs_stderr(
    browser, deployment, finished_run
):
    run_id, states = finished_run
    open_results_tab(browser, run_id)

    rows = shown_rows(browser)
    assert rows == {name: TASK_TO_JOB_STATE[states[job_task(name)]] for name in JOBS}, states
    found = records(run_dir(DAG, run_id))
    assert rows == {name: job_state(found.get(name)) for name in JOBS}, "as the records say"
    counts = {
        b.get_attribute("data-filter"): b.text for b in browser.css("#counts button")
    }
    assert counts == {
        "all": "6 jobs",
        "ok": "4 ok",
        "failed": "1 failed",
        "canceled": "1 canceled",
        "missing": "0 missing",
    }
    sim_3 = browser.css("#jobs tbody tr[data-job=sim_3]")[0]
    assert sim_3.find_elements("css selector", "td")[2].text == "1", "its return code"
    assert sim_3.find_elements("css selector", "td")[5].text == found["sim_3"].hpc_job_id

    sim_3.click()
    stderr = browser.wait(
        lambda d: [e for e in browser.css("#stderr[data-job=sim_3]") if e.text], "sim_3's stderr"
    )[0]
    assert stderr.text.strip() == "sim 3"
    stdout = browser.wait(lambda d: browser.css("#stdout[data-job=sim_3]"), "sim_3's stdout")[0]
    assert stdout.text == "(empty)", "sim_3 wrote nothing to stdout"
    # The summary task wrote the report; the page shows it with its plots drawn.
    assert (run_dir(DAG, run_id) / "report.html").is_file()
    frame = browser.wait(lambda d: browser.css("iframe#report"), "the report's iframe")[0]
    browser.reveal([frame])
    browser.driver.switch_to.frame(frame)
    plots = browser.wait(lambda d: browser.css(".main-svg"), "the report's plots", timeout=60)
    assert plots, "plotly drew the report's figures inside the page"
    browser.driver.switch_to.parent_frame()

    browser.driver.switch_to.default_content()
    browser.screenshot("results_page.png")


def test_status_filter_and_name_filter_narrow_the_table(browser, finished_run):
    run_id, _ = finished_run
    open_results_tab(browser, run_id)
    browser.css("#counts button[data-filter=failed]")[0].click()
    assert shown_rows(browser) == {"sim_3": "failed"}
    browser.css("#counts button[data-filter=all]")[0].click()
    browser.by_id("name-filter")[0].send_keys("sim_")
    assert shown_rows(browser) == {"sim_1": "ok", "sim_2": "ok", "sim_3": "failed"}


def test_resubmit_failed_starts_a_run_that_reruns_only_the_failed_job(
    browser, deployment, finished_run
):
    run_id, _ = finished_run
    open_results_tab(browser, run_id)
    button = browser.by_id("resubmit")[0]
    assert button.is_enabled() and button.text == "Resubmit failed (1)"
    button.click()
    link = browser.wait(
        lambda d: browser.css("#resubmit-result a[data-run-id]"),
        "the new run's id after the resubmit",
        timeout=30,
    )[0]
    new_run = link.get_attribute("data-run-id")
    assert new_run != run_id
    assert deployment.run(DAG, new_run)["conf"] == {
        "rerun_of": run_id,
        "rerun": ["failed", "missing"],
    }

    # Its "grid" link opens the new run in Airflow's own view (the parent window).
    browser.css("#resubmit-result a:not([data-run-id])")[0].click()
    browser.driver.switch_to.default_content()
    browser.wait(
        lambda d: urlparse(d.current_url).path == run_path(new_run)
        and any(new_run in e.text for e in browser.css("[data-testid=header-card]")),
        "Airflow's view of the new run",
    )

    assert deployment.wait_run(DAG, new_run, timeout=300) in ("success", "failed")
    states = deployment.task_states(DAG, new_run)
    jobs = {name: states[job_task(name)] for name in JOBS}
    assert jobs["sim_3"] in ("success", "failed"), f"the failed job ran again: {states}"
    assert {n: s for n, s in jobs.items() if n != "sim_3"} == dict.fromkeys(
        ["prepare", "sim_1", "sim_2", "report", "archive"], "skipped"
    ), f"only the failed job ran: {states}"

    open_results_tab(browser, new_run)
    subtitle = browser.by_id("subtitle")[0]
    assert subtitle.find_element("css selector", "a[data-run-id]").text == run_id
    browser.driver.switch_to.default_content()
    browser.screenshot("results_rerun.png")
