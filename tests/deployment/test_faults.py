"""Faults in the middle of a run, in the real deployment. Each run must end as if nothing had
happened: no batch submitted twice, nothing canceled by jobforge, exactly one record per job,
every task green and the run green."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_jobforge.slurm.tags import run_key

from .conftest import REPO
from .runs import record_lines, records, run_dir, slurm_jobs, submissions_per_batch, wait_states
from .workload import SLOW_SUBMIT

pytestmark = [pytest.mark.deployment, pytest.mark.slurm, pytest.mark.slow]

DAG = "jobforge_deploy_faults"
JOBS = {"f0", "f1", "f2", "f3"}
WAITS = ("g.wait_0000", "g.wait_0001")


def deferred(states: dict[str, Any]) -> bool:
    return all(states.get(w) == "deferred" for w in WAITS)


def run_through(
    deployment: Any, fault: Callable[[str], None], timeout: float = 600, lost_ok: bool = False
) -> str:
    """Trigger the faults DAG, apply `fault(run_id)` mid-run, wait, and check the run ended
    clean. Returns the run id. With `lost_ok`, a batch job the controller lost (accounting
    keeps it PENDING or RUNNING for ever) may have been resubmitted once."""
    active = {"state": ["queued", "running"]}
    for run in deployment.get(f"/api/v2/dags/{DAG}/dagRuns", params=active)["dag_runs"]:
        # what an earlier, failed test left: it would hold this run in the queue
        path = f"/api/v2/dags/{DAG}/dagRuns/{quote(run['dag_run_id'], safe='')}"
        deployment.patch(path, json={"state": "failed"})
    run_id = deployment.trigger(DAG)
    fault(run_id)
    state = deployment.wait_run(DAG, run_id, timeout=timeout)
    states = deployment.task_states(DAG, run_id)
    assert {s for s in states.values()} == {"success"}, states
    assert state == "success"
    jobs = slurm_jobs(DAG, run_id)
    if lost_ok:
        jobs = [j for j in jobs if j.state not in ("PENDING", "RUNNING")]  # purged when lost
    assert submissions_per_batch(jobs, DAG, run_id) == {"g-0000": 1, "g-0001": 1}, jobs
    assert {j.state for j in jobs} == {"COMPLETED"}, "nothing canceled, nothing failed"
    out = run_dir(DAG, run_id)
    if lost_ok:
        # A slurmctld that lost its state may itself relaunch a batch it had started (seen:
        # its running job killed by signal 9 at the restart, then run again under the same
        # id): jobforge resubmits nothing twice (above), and every job ends succeeded.
        assert set(record_lines(out)) == set(JOBS) and max(record_lines(out).values()) <= 2
    else:
        assert dict(record_lines(out)) == dict.fromkeys(JOBS, 1), "exactly one record per job"
    assert all(r.succeeded for r in records(out).values())
    return run_id


def restart_after(deployment: Any, name: str, how: str, pause: float = 5.0) -> Callable:
    def fault(run_id: str) -> None:
        wait_states(deployment, DAG, run_id, deferred)
        component = deployment.component(name)
        if how == "crash":
            component.crash()  # kill -9 of the main process, as an OOM kill leaves it
        else:
            component.stop(how)  # the whole session: TERM (graceful) or KILL (host gone)
        time.sleep(pause)
        component.start()

    return fault


def test_kill_9_of_the_triggerer_and_a_restart_lose_and_duplicate_nothing(deployment, workload):
    run_through(deployment, restart_after(deployment, "triggerer", "crash"))


def test_sigterm_of_the_triggerer_and_a_restart_cancel_no_healthy_job(deployment, workload):
    run_through(deployment, restart_after(deployment, "triggerer", "TERM"))


def test_kill_9_of_the_scheduler_and_its_workers_and_a_restart(deployment, workload):
    run_through(deployment, restart_after(deployment, "scheduler", "KILL"))


def test_kill_9_of_slurmctld_and_a_restart(deployment, workload):
    """A slurmctld killed before it saved its state purges the jobs it had just accepted:
    such a batch is resubmitted once the grace period says it is lost; none runs twice."""

    def fault(run_id: str) -> None:
        wait_states(deployment, DAG, run_id, deferred)
        subprocess.run(["pkill", "-9", "-x", "slurmctld"], check=True)
        time.sleep(10)
        start = subprocess.run(
            [str(REPO / "scripts/slurm/start.sh")], capture_output=True, text=True, check=False
        )
        assert start.returncode == 0, start.stderr[-2000:]

    run_through(deployment, fault, lost_ok=True)


def test_the_api_server_down_for_100_s_fails_no_healthy_work(deployment, workload):
    run_through(deployment, restart_after(deployment, "api-server", "TERM", pause=100))


def worker_of(ti_id: str) -> int | None:
    """The LocalExecutor worker running task instance `ti_id` (its process title names it)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "LocalExecutor" in cmd and ti_id in cmd:
            return int(proc.name)
    return None


def kill_tree(pid: int) -> None:
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    os.kill(pid, signal.SIGKILL)
    for child in children:
        kill_tree(int(child))


def test_a_worker_killed_right_after_sbatch_is_retried_and_the_retry_adopts(
    deployment, workload
):
    """The submit task parses slowly (workload.SLOW_SUBMIT); once it runs, the api-server is
    frozen: the task gets through sbatch (no API call needed) and hangs pushing its XCom.
    Then its worker is killed; the scheduler fails the task, and its retry adopts the job."""
    api = deployment.component("api-server")
    task = "g.submit_0000"

    def fault(run_id: str) -> None:
        name = f"jf-{run_key(DAG, run_id)}.g-0000.t1"
        path = f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task}"
        deadline = time.monotonic() + 120
        while (ti := deployment.get(path))["state"] != "running":
            assert ti["state"] in (None, "scheduled", "queued"), ti
            assert time.monotonic() < deadline, f"{task} never ran: {ti}"
            time.sleep(0.05)
        os.killpg(api.pid, signal.SIGSTOP)  # uvicorn and its workers
        try:
            deadline = time.monotonic() + 60
            while not subprocess.run(
                ["squeue", "-h", "--states=all", f"--name={name}", "-o", "%i"],
                capture_output=True, text=True, check=False,
            ).stdout.strip():
                assert time.monotonic() < deadline, "the submit task never reached sbatch"
                time.sleep(0.1)
            worker = worker_of(ti["id"])
            assert worker is not None, "the submit task's worker is gone before the kill"
            kill_tree(worker)
        finally:
            os.killpg(api.pid, signal.SIGCONT)

    SLOW_SUBMIT.touch()
    try:
        run_id = run_through(deployment, fault)
    finally:
        SLOW_SUBMIT.unlink(missing_ok=True)
    path = f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task}"
    tries = deployment.get(path)["try_number"]
    assert tries >= 2, "the killed try failed and was retried"
    assert "adopted SLURM job" in deployment.task_log(DAG, run_id, task, tries)
