"""The pipeline's run as a user sees it in Airflow's React UI, in headless Chromium: the grid
shows the TaskGroups and the failed job task in red, the task's log page shows its job's
stdout tail. Screenshots (grid.png, task_log.png, dags.png) go to
$JOBFORGE_ARTIFACTS/screenshots/ (default .jobforge/artifacts/screenshots/).

UI routes of Airflow 3.3 used here: /dags (list), /dags/{dag}/runs/{run} (grid + run
details), /dags/{dag}/runs/{run}/tasks/{task}?try_number=N (task instance, Logs tab first).
The grid's DOM: row labels `#task-<task id with . as ->`, cells `#grid-<run id>-<task id>`
holding a `[data-testid=task-state-badge]` whose colour palette is the state's.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from .browser import Browser, chromium
from .runs import run_dag

pytestmark = [pytest.mark.deployment, pytest.mark.slurm]

DAG = "jobforge_deploy_pipeline"


@pytest.fixture(scope="module")
def ui_run(deployment, workload) -> Iterator[tuple[str, dict[str, str | None]]]:
    """A run of its own, in which sim_3 fails (on its first run in every DAG run)."""
    run_id, state = run_dag(deployment, DAG)
    states = deployment.task_states(DAG, run_id)
    assert state == "failed", f"sim_3 fails in this run, so the run does: {states}"
    assert states["short.job_sim_3"] == "failed" and states["short.job_sim_1"] == "success"
    yield run_id, states


@pytest.fixture(scope="module")
def browser(deployment) -> Iterator[Browser]:
    """Requested first by every test, so that a missing browser skips (or under CI=true
    fails) before the pipeline runs."""
    with chromium(deployment.base_url) as b:
        b.login(deployment.token)
        yield b


def run_page(run_id: str, task_id: str | None = None) -> str:
    path = f"/dags/{DAG}/runs/{quote(run_id, safe='')}"
    return path + (f"/tasks/{quote(task_id, safe='')}?try_number=1" if task_id else "")


def assert_app_page(browser: Browser) -> None:
    """The UI itself, not a login page or an error."""
    url = browser.driver.current_url
    assert "/login" not in url, f"the UI sent the browser to a login page: {url}"
    browser.wait(lambda d: browser.css("[data-testid=nav-sidebar]"), "the UI's sidebar")


# Colours of the grid's badges, as the browser computes them: a probe element painted with the
# UI theme's palette token for a state (Chakra: --chakra-colors-<state>-solid) next to a badge.
PALETTE_JS = """
const [anchor, states] = arguments;
const out = {};
for (const state of states) {
  const probe = document.createElement('span');
  probe.style.backgroundColor = `var(--chakra-colors-${state}-solid)`;
  anchor.appendChild(probe);
  out[state] = getComputedStyle(probe).backgroundColor;
  probe.remove();
}
return out;
"""

BADGES_JS = """
const [prefix] = arguments;
const out = {};
for (const cell of document.querySelectorAll('a[id]')) {
  if (!cell.id.startsWith(prefix)) continue;
  const badge = cell.querySelector('[data-testid=task-state-badge]');
  if (badge) out[cell.id.slice(prefix.length)] = getComputedStyle(badge).backgroundColor;
}
return out;
"""


def test_grid_shows_the_task_groups_and_the_failed_job_task_in_red(browser, deployment, ui_run):
    run_id, states = ui_run
    browser.open(run_page(run_id))
    assert_app_page(browser)
    header = browser.wait(
        lambda d: browser.css("[data-testid=header-card] [data-testid=state-badge]"),
        "the run's state in its header",
    )[0]
    assert header.text.strip() == "Failed"
    row_state = browser.wait(
        lambda d: browser.xpath(
            "//tr[.//a[normalize-space()='short.job_sim_3']]//*[@data-testid='table-cell-state']"
        ),
        "job_sim_3 in the run's task instance table",
    )[0]
    assert row_state.text.strip() == "Failed"
    for group in ("short", "long"):
        label = browser.wait(
            lambda d, g=group: browser.css(f"#task-{g} a[data-group-id='{g}']"),
            f"the TaskGroup row {group!r}",
        )[0]
        assert label.text.strip() == group
    expand = browser.wait(
        lambda d: browser.css("[data-testid=expand-all-button]"),
        "the 'Expand all task groups' button",
    )[0]
    expand.click()
    sim_3 = browser.wait(lambda d: browser.css("#task-short-job_sim_3"), "the row of job_sim_3")
    assert sim_3[0].text.strip() == "job_sim_3"

    prefix = f"grid-{run_id}-"
    cell = browser.wait(
        lambda d: browser.by_id(prefix + "short.job_sim_3"),
        "job_sim_3's grid cell",
    )[0]
    # Every task instance's badge is painted in its REST state's palette colour.
    badges = browser.wait(
        lambda d: (b := browser.script(BADGES_JS, prefix)) and len(b) >= len(states) and b,
        "a badge in every grid cell",
    )
    palette = browser.script(PALETTE_JS, cell, sorted({s for s in states.values() if s}))
    assert len(set(palette.values())) == len(palette), f"states share a colour: {palette}"
    shown = {task: badges.get(task) for task in states}
    assert shown == {task: palette[state] for task, state in states.items()}, (
        f"grid colours {shown}\nstate colours {palette}\nREST states {states}"
    )
    assert badges["short"] == palette["failed"] and badges["long"] == palette["success"]

    # (The cell's tooltip also says "State: Failed", but hovering a cell is flaky in headless
    # Chromium when many runs push the column off-screen: the badge colours above are the
    # check.)
    browser.screenshot("grid.png")


def test_task_log_page_shows_the_jobs_stdout_tail(browser, deployment, ui_run):
    run_id, _ = ui_run
    browser.open(run_page(run_id, "short.job_sim_1"))
    assert_app_page(browser)
    log = browser.wait(
        lambda d: [
            e for e in browser.css("[data-testid=virtualized-list]") if "sim 1 on" in e.text
        ],
        "the log of short.job_sim_1 (try 1) with its stdout tail",
    )[0]
    assert "sim_1.out (last lines):" in log.text
    assert "short.job_sim_1" in browser.text()
    browser.reveal(browser.by_id(f"grid-{run_id}-short.job_sim_1"))
    browser.screenshot("task_log.png")


def test_dag_list_shows_the_pipeline_with_its_latest_run(browser, deployment, ui_run):
    browser.open("/dags")
    assert_app_page(browser)
    browser.wait(lambda d: browser.css("button[aria-label='Show table view']"), "the view toggle")[
        0
    ].click()
    row = browser.wait(
        lambda d: browser.xpath(
            f"//tr[.//a[@href='/dags/{DAG}']]"
            "[.//*[@data-testid='table-cell-last_run_start_date']//*[@data-testid='state-badge']]"
        ),
        f"{DAG}'s row with its latest run",
    )[0]
    assert "deployment-test" in row.text
    badge = row.find_element("css selector", "[data-testid=state-badge]")
    assert badge.get_attribute("aria-label") in {"queued", "running", "success", "failed"}
    browser.screenshot("dags.png")
