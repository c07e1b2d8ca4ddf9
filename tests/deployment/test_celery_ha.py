"""The celery profile of the real deployment (scripts/airflow/start.sh --executor celery):
CeleryExecutor with Redis, two Celery workers, two schedulers, two triggerers, one PostgreSQL.

Where an SLURM integration breaks at such a site: a task retried on another worker, triggers
moved between triggerers, one poller per triggerer process. Every fault run ends as on one
machine: no batch submitted twice, nothing canceled by jobforge, exactly one record per job,
every task green and the run green (`test_faults.run_through` checks all of it).

The module switches the deployment to the celery profile and back to the LocalExecutor
profile afterwards, for the other deployment tests.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_jobforge.rundir.events import BATCH_ENDED, CANCELED_BY_USER, read_events
from airflow_jobforge.slurm.tags import run_key
from tests.slurm_tools import cancel_jobs, sdiag_counts, sdiag_reset

from .conftest import run_script
from .runs import record_lines, records, run_dag, run_dir, slurm_jobs, wait_states
from .test_faults import DAG as FAULTS
from .test_faults import WAITS, run_through
from .test_pipeline import DAG as PIPELINE
from .test_pipeline import EXPECTED
from .workload import SLOW_RESULT, SLOW_SUBMIT, SPREAD

pytestmark = [pytest.mark.deployment, pytest.mark.slurm, pytest.mark.slow]

WORKERS = ("worker-1", "worker-2")
TRIGGERERS = ("triggerer", "triggerer-2")
SPREAD_DAG = "jobforge_deploy_spread"


@pytest.fixture(scope="module")
def celery(deployment: Any, workload: Any) -> Iterator[Any]:
    """The deployment on the celery profile for this module; the LocalExecutor profile again
    after it (both starts restart every component: the executor changed)."""
    python = Path(deployment.env["JOBFORGE_AIRFLOW_BIN"]).with_name("python")
    provider = [str(python), "-c", "import airflow.providers.celery"]
    installed = subprocess.run(provider, capture_output=True, check=False).returncode == 0
    if not installed and os.environ.get("CI") != "true":
        # Under CI=true start.sh fails instead, with its reason.
        pytest.skip("apache-airflow-providers-celery is not installed (the celery extra)")
    try:
        started = time.monotonic()
        result = run_script("start.sh", "--executor", "celery", timeout=900)
        if result.returncode != 0:
            pytest.fail(
                f"start.sh --executor celery failed ({result.returncode}):\n{result.stderr[-4000:]}"
            )
        print(f"celery profile up in {time.monotonic() - started:.1f}s")
        yield deployment
    finally:  # whatever happened: the other deployment tests want the LocalExecutor
        SLOW_SUBMIT.unlink(missing_ok=True)
        SLOW_RESULT.unlink(missing_ok=True)
        started = time.monotonic()
        back = run_script("start.sh", timeout=900)
        print(f"local profile back in {time.monotonic() - started:.1f}s")
        assert back.returncode == 0, f"start.sh (local profile) failed:\n{back.stderr[-4000:]}"


# --- where things ran ---------------------------------------------------------------------


def log_offsets(deployment: Any, names: tuple[str, ...]) -> dict[str, int]:
    """Where each component's log ends now: what it logs from here on is this test's."""
    offsets = {}
    for name in names:
        try:
            offsets[name] = deployment.component(name).log_file.stat().st_size
        except OSError:
            offsets[name] = 0
    return offsets


def log_since(deployment: Any, name: str, offset: int) -> str:
    with open(deployment.component(name).log_file, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def triggerer_jobs(deployment: Any) -> dict[str, set[int]]:
    """triggerer component -> the triggerer job ids (the database's) whose trigger log files
    its processes hold open (`<task log>.trigger.<job id>.log`, open while the trigger runs).
    Both triggerers run on this host: the job table's hostname cannot tell them apart."""
    found: dict[str, set[int]] = {}
    for name in TRIGGERERS:
        found[name] = set()
        sid = deployment.component(name).pid
        if sid is None:
            continue
        pids = subprocess.run(
            ["pgrep", "-s", str(sid)], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            try:
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if m := re.search(r"\.log\.trigger\.(\d+)\.log$", target):
                    found[name].add(int(m[1]))
    return found


def triggerer_job_of(deployment: Any, dag: str, run_id: str, task: str) -> int | None:
    """The triggerer job holding `task`'s trigger (the database, through the REST API)."""
    return (task_instance(deployment, dag, run_id, task).get("triggerer_job") or {}).get("id")


def worker_of(deployment: Any, ti_id: str) -> str | None:
    """The Celery worker whose session runs task instance `ti_id` (the task process retitles
    itself "airflow worker -- <ti id>"; it stays in the worker's session)."""
    sessions = {deployment.component(w).pid: w for w in WORKERS}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if f"airflow worker -- {ti_id}" not in cmd:
                continue
            sid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3])
        except (OSError, ValueError, IndexError):
            continue
        if sid in sessions:
            return sessions[sid]
    return None


def workloads_run(deployment: Any, offsets: dict[str, int], run_id: str) -> dict[str, list]:
    """worker -> the (task id, try) of this run it was handed ("Executing workload in
    Celery: ... task_id='...', ... run_id='...', try_number=N")."""
    found: dict[str, list] = {}
    for name, offset in offsets.items():
        found[name] = []
        for line in log_since(deployment, name, offset).splitlines():
            if "Executing workload in Celery" not in line or run_id not in line:
                continue
            task, tries = (
                re.search(r"task_id='([^']+)'", line),
                re.search(r"try_number=(\d+)", line),
            )
            if task and tries:
                found[name].append((task[1], int(tries[1])))
    return found


def task_instance(deployment: Any, dag: str, run_id: str, task: str) -> dict:
    return deployment.get(
        f"/api/v2/dags/{dag}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task}"
    )


def wait_running(
    deployment: Any, dag: str, run_id: str, task: str, after: str | None = None
) -> dict:
    """Until `task` runs on a worker (after having been `after`, e.g. deferred); returns it."""
    seen_after = after is None
    deadline = time.monotonic() + 180
    while True:
        ti = task_instance(deployment, dag, run_id, task)
        seen_after = seen_after or ti["state"] == after
        if seen_after and ti["state"] == "running":
            return ti
        assert ti["state"] not in ("success", "failed", "up_for_retry"), ti
        assert time.monotonic() < deadline, f"{task} never ran: {ti}"
        time.sleep(0.25)  # each look costs the api-server ~50 ms of CPU; the parse takes 5 s


# --- the pipeline ---------------------------------------------------------------------------


def test_the_pipeline_example_on_celery_ends_as_on_one_machine(celery):
    offsets = log_offsets(celery, WORKERS)
    run_id, state = run_dag(celery, PIPELINE, timeout=400)
    assert state == "failed", "sim_3 failed: the run says so"
    assert celery.task_states(PIPELINE, run_id) == EXPECTED
    out = run_dir(PIPELINE, run_id)
    found = records(out)
    assert set(record_lines(out).values()) == {1} and len(found) == 6, "one record per job"
    assert found["sim_3"].return_code == 1 and found["report"].status == "canceled"
    assert all(found[n].succeeded for n in ("prepare", "sim_1", "sim_2", "archive"))
    jobs = slurm_jobs(PIPELINE, run_id)
    assert sorted(j.state for j in jobs) == ["COMPLETED", "FAILED", "FAILED"]
    summary = celery.task_log(PIPELINE, run_id, "summary")
    assert "6 jobs: 4 successful, 1 failed, 1 canceled, 0 missing" in summary
    ran = workloads_run(celery, offsets, run_id)
    print("tasks per Celery worker:", {w: len(t) for w, t in ran.items()})
    assert sum(len(t) for t in ran.values()) >= 8, f"the tasks ran on the Celery workers: {ran}"


# --- 40 deferred waits over two triggerers ---------------------------------------------------


def check_spread_and_cancel(celery: Any, run_id: str) -> None:
    """All waits deferred over both triggerers, what polling costs, then a user's cancel."""
    waits = [f"g.wait_{i:04d}" for i in range(SPREAD)]
    try:
        wait_states(
            celery, SPREAD_DAG, run_id, lambda s: all(s.get(w) == "deferred" for w in waits), 600
        )
        # Which triggerer job holds which wait (the database, through the REST API). A
        # triggerer claims unassigned triggers when it looks, up to its capacity (25 in the
        # profile): the ones the first could not take wait for the other's next look.
        deadline = time.monotonic() + 60
        while True:
            held: dict[int | None, set[str]] = {}
            for ti in celery.task_instances(SPREAD_DAG, run_id):
                if ti["task_id"] in waits:
                    job = ti.get("triggerer_job") or {}
                    held.setdefault(job.get("id"), set()).add(ti["task_id"])
            if None not in held or time.monotonic() > deadline:
                break
            time.sleep(1)
        print("waits per triggerer job:", {k: len(v) for k, v in held.items()})
        assert None not in held, "every deferred wait is assigned to a triggerer"
        assert len(held) == 2, f"the waits are spread over both triggerers: {held.keys()}"
        # ... and which triggerer process runs them (the trigger log files it holds open).
        jobs = triggerer_jobs(celery)
        print("triggerer jobs per component:", jobs)
        assert all(len(jobs[t]) == 1 for t in TRIGGERERS), jobs
        assert set().union(*jobs.values()) == set(held), (jobs, held.keys())

        sdiag_reset()
        window = 30.0
        time.sleep(window)
        rpcs = sdiag_counts().get("REQUEST_JOB_INFO", 0)
        print(f"REQUEST_JOB_INFO: {rpcs} in {window:.0f} s, {SPREAD} waits over 2 triggerers")
        # One shared poller per triggerer process, each asking at most every 2 s (backing
        # off to 10 s) for all its jobs at once; one query per wait would be >= 40 a poll.
        assert 2 <= rpcs <= 2 * (window / 2 + 1), f"{rpcs} job-info RPCs in {window:.0f}s"
    finally:
        # A user marks the run failed: each triggerer kills its waits, which cancel their jobs.
        celery.patch(f"/api/v2/dags/{SPREAD_DAG}/dagRuns/{run_id}", json={"state": "failed"})
    deadline = time.monotonic() + 180
    while True:
        jobs = slurm_jobs(SPREAD_DAG, run_id)
        done = records(run_dir(SPREAD_DAG, run_id))
        if len(jobs) == SPREAD and {j.state for j in jobs} == {"CANCELLED"} and len(done) == SPREAD:
            break
        assert time.monotonic() < deadline, f"not all canceled and recorded: {jobs} {done}"
        time.sleep(2)
    assert {r.status for r in done.values()} <= {"canceled", "missing"}
    events = read_events(run_dir(SPREAD_DAG, run_id))
    assert len([e for e in events if e.type == CANCELED_BY_USER]) == SPREAD


def test_forty_deferred_waits_spread_over_both_triggerers_one_status_query_per_poll_each(celery):
    run_id = celery.trigger(SPREAD_DAG)
    try:
        check_spread_and_cancel(celery, run_id)
    finally:
        cancel_jobs(f"jf-{run_key(SPREAD_DAG, run_id)}.")


# --- faults ----------------------------------------------------------------------------------


def kill_worker_running(celery: Any, ti: dict) -> str:
    """kill -9 of the whole Celery worker running `ti` (its host gone: main process, pool,
    the task); returns which."""
    worker = worker_of(celery, ti["id"])
    assert worker is not None, "the task's worker is gone before the kill"
    celery.component(worker).stop("KILL")
    return worker


def test_kill_9_of_a_celery_worker_mid_submit_the_other_worker_retries_and_adopts(celery):
    """As test_faults' LocalExecutor case: the submit parses slowly, the api-server is frozen
    once it runs, the task gets through sbatch and hangs; then its whole worker dies. The
    retry runs on the other worker (the killed one stays down until the run ends) and adopts
    the job."""
    api = celery.component("api-server")
    task = "g.submit_0000"
    killed: list[str] = []

    def fault(run_id: str) -> None:
        name = f"jf-{run_key(FAULTS, run_id)}.g-0000.t1"
        ti = wait_running(celery, FAULTS, run_id, task)
        os.killpg(api.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 60
            while not subprocess.run(
                ["squeue", "-h", "--states=all", f"--name={name}", "-o", "%i"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip():
                assert time.monotonic() < deadline, "the submit task never reached sbatch"
                time.sleep(0.1)
            killed.append(kill_worker_running(celery, ti))
        finally:
            os.killpg(api.pid, signal.SIGCONT)

    offsets = log_offsets(celery, WORKERS)
    SLOW_SUBMIT.touch()
    try:
        run_id = run_through(celery, fault)
    finally:
        SLOW_SUBMIT.unlink(missing_ok=True)
    assert not celery.component(killed[0]).alive(), "the killed worker stayed down"
    celery.component(killed[0]).start()
    tries = task_instance(celery, FAULTS, run_id, task)["try_number"]
    assert tries >= 2, "the killed try failed and was retried"
    assert "adopted SLURM job" in celery.task_log(FAULTS, run_id, task, tries)
    ran = workloads_run(celery, offsets, run_id)
    print(f"killed {killed[0]}; workloads: {ran}")
    other = next(w for w in WORKERS if w != killed[0])
    assert (task, tries) in ran[other], "the retry ran on the other worker"


def settled(deployment: Any, run_id: str, task: str) -> None:
    """Until no task of the faults run but `task` is on its way to a worker or on one (the
    tasks waiting for `task` have no state yet), and the other batch's wait has succeeded."""
    busy = {"scheduled", "queued", "running", "up_for_retry", "restarting", "deferred"}
    deadline = time.monotonic() + 120
    while True:
        states = deployment.task_states(FAULTS, run_id)
        others = {t: s for t, s in states.items() if t != task}
        if states.get("g.wait_0001") == "success" and not busy & set(others.values()):
            return
        assert time.monotonic() < deadline, f"the rest of the run never settled: {states}"
        time.sleep(0.5)


def test_kill_9_of_a_celery_worker_mid_result_the_other_worker_retries_and_adopts(celery):
    """The first wait's resume (on a worker, after its trigger fired) holds in its parse
    until the rest of the run has settled; then the api-server is frozen, so the wait gets
    through its work (the batch's records, its `batch_ended` event) and hangs reporting it;
    then its whole worker dies. The
    retry, on the other worker, adopts the ended job: nothing resubmitted, nothing recorded
    twice."""
    api = celery.component("api-server")
    task = "g.wait_0000"
    killed: list[str] = []

    def fault(run_id: str) -> None:
        ti = wait_running(celery, FAULTS, run_id, task, after="deferred")
        # The resume holds in its parse (workload.SLOW_RESULT) until the other batch's tasks
        # are done: one the doomed worker had received but not started when the api-server
        # froze would sit queued until the scheduler's task_queued_timeout, which is
        # Airflow's recovery from a lost worker, not this test's subject.
        settled(celery, run_id, task)
        os.killpg(api.pid, signal.SIGSTOP)
        SLOW_RESULT.unlink()
        try:
            # The wait's work done: its batch_ended event (or 20 s: it hangs on an API call)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                e.type == BATCH_ENDED and e.batch == "g-0000"
                for e in read_events(run_dir(FAULTS, run_id))
            ):
                time.sleep(0.2)
            killed.append(kill_worker_running(celery, ti))
        finally:
            os.killpg(api.pid, signal.SIGCONT)

    offsets = log_offsets(celery, WORKERS)
    SLOW_RESULT.touch()
    try:
        run_id = run_through(celery, fault)
    finally:
        SLOW_RESULT.unlink(missing_ok=True)
    assert not celery.component(killed[0]).alive(), "the killed worker stayed down"
    celery.component(killed[0]).start()
    tries = task_instance(celery, FAULTS, run_id, task)["try_number"]
    assert tries >= 2, "the killed try failed and was retried"
    log = celery.task_log(FAULTS, run_id, task, tries)
    assert "waiting for SLURM job" in log and "ended COMPLETED" in log, log[-3000:]
    ended = [e for e in read_events(run_dir(FAULTS, run_id)) if e.type == BATCH_ENDED]
    print("batch_ended events of g-0000:", len([e for e in ended if e.batch == "g-0000"]))
    ran = workloads_run(celery, offsets, run_id)
    print(f"killed {killed[0]}; workloads: {ran}")
    other = next(w for w in WORKERS if w != killed[0])
    assert (task, tries) in ran[other], "the retry ran on the other worker"


def test_kill_9_of_one_triggerer_moves_its_triggers_to_the_other_no_cancel_no_duplicate(celery):
    """The triggerer holding the first wait dies with its host (kill -9 of its session, log
    server included). Once its heartbeat is older than the health threshold (30 s), the other
    triggerer takes its triggers over; the dead one cancels nothing (it cannot), and the one
    taking over submits nothing."""
    moved: dict[str, Any] = {}

    def fault(run_id: str) -> None:
        wait_states(celery, FAULTS, run_id, lambda s: all(s.get(w) == "deferred" for w in WAITS))
        deadline = time.monotonic() + 60
        while True:
            job = triggerer_job_of(celery, FAULTS, run_id, WAITS[0])
            holders = [t for t, ids in triggerer_jobs(celery).items() if job in ids]
            if holders:
                break
            assert time.monotonic() < deadline, f"no triggerer runs {WAITS[0]} (job {job})"
            time.sleep(0.5)
        dead = holders[0]
        other = next(t for t in TRIGGERERS if t != dead)
        celery.component(dead).stop("KILL")
        deadline = time.monotonic() + 150
        while (now := triggerer_job_of(celery, FAULTS, run_id, WAITS[0])) in (job, None):
            if task_instance(celery, FAULTS, run_id, WAITS[0])["state"] != "deferred":
                break  # fired already (its batch ended): moved all the same, see below
            assert time.monotonic() < deadline, f"{WAITS[0]} never left triggerer job {job}"
            time.sleep(1)
        moved.update(dead=dead, other=other, job=job, now=now, runs=triggerer_jobs(celery))
        celery.component(dead).start()

    run_id = run_through(celery, fault)  # no job CANCELLED, none submitted twice
    # Each triggerer that ran the wait's trigger left its log: <task log>.trigger.<job id>.log
    folder = (
        Path(celery.env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
        / f"dag_id={FAULTS}"
        / f"run_id={run_id}"
        / f"task_id={WAITS[0]}"
    )
    ran_in = {int(f.name.rsplit(".", 2)[-2]) for f in folder.glob("attempt=1.log.trigger.*.log")}
    print(
        f"killed {moved['dead']} (job {moved['job']}); the first wait's trigger ran in "
        f"triggerer jobs {sorted(ran_in)}; REST after the kill: {moved['now']}"
    )
    assert moved["job"] in ran_in and len(ran_in) == 2, "the trigger moved to the other one"


def test_kill_9_of_one_scheduler_the_other_carries_the_run(celery):
    """kill -9 of one scheduler's whole session while the waits are deferred; it stays down
    until the run ended: the other scheduler schedules the rest."""
    scheduler = celery.component("scheduler")

    def fault(run_id: str) -> None:
        wait_states(celery, FAULTS, run_id, lambda s: all(s.get(w) == "deferred" for w in WAITS))
        scheduler.stop("KILL")

    try:
        run_through(celery, fault)
        assert not scheduler.alive()
    finally:
        scheduler.start()


def test_redis_restarted_mid_run_loses_and_duplicates_nothing(celery):
    """The broker stops (it saves its queue) while the batches run and the waits are deferred,
    and comes back 10 s later: workers and schedulers reconnect."""
    redis = celery.component("redis")

    def fault(run_id: str) -> None:
        wait_states(celery, FAULTS, run_id, lambda s: all(s.get(w) == "deferred" for w in WAITS))
        redis.stop()
        time.sleep(10)
        redis.start()

    run_through(celery, fault)
