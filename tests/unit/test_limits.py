"""Submission limits: batches of a group in the queue at once, sbatch calls per second."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_jobforge.config import parse_configuration
from airflow_jobforge.config.jade import import_jade
from airflow_jobforge.dag.render import render_config
from airflow_jobforge.errors import ConfigError, JobForgeError
from airflow_jobforge.slurm.limits import (
    Reservations,
    SubmissionGate,
    admitted,
    batch_group,
    check_rate,
    cluster_stem,
    count_group_jobs,
    rate_delay,
    read_last_start,
)


# --- the pure rules --------------------------------------------------------------------------
def test_sbatch_calls_start_at_least_one_over_the_rate_apart():
    assert rate_delay(None, 2.0, 100.0) == 0.0  # the first submission never waits
    assert rate_delay(100.0, 2.0, 100.1) == pytest.approx(0.4)
    assert rate_delay(100.0, 2.0, 100.7) == 0.0
    assert rate_delay(100.0, None, 100.0) == 0.0


def test_a_clock_set_back_delays_the_next_sbatch_by_one_spacing_at_most():
    assert rate_delay(10_000.0, 2.0, 100.0) == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [0, -1, "fast", float("nan"), float("inf")])
def test_a_rate_must_be_a_positive_number(bad):
    with pytest.raises(JobForgeError, match="submit_rate_limit"):
        check_rate(bad)


def test_a_rate_from_a_connection_extra_may_be_a_string():
    assert check_rate("2.5") == 2.5 and check_rate(None) is None


def test_a_group_counts_only_its_own_jobs_of_its_own_run():
    names = [
        "jf-aaaaaaaaaaaa.sim-0000.t1",
        "jf-aaaaaaaaaaaa.sim-0001.w2",
        "jf-aaaaaaaaaaaa.sim-0002.t1m2",
        "jf-aaaaaaaaaaaa.sim-big-0000.t1",  # group sim-big shares the prefix `sim-`
        "jf-bbbbbbbbbbbb.sim-0000.t1",  # another run
        "other-job",
    ]
    assert count_group_jobs(names, "aaaaaaaaaaaa", "sim") == 3
    assert count_group_jobs(names, "aaaaaaaaaaaa", "sim-big") == 1
    assert batch_group("sim-big-0003") == "sim-big"


def test_only_as_many_waiters_as_free_slots_go_in_batch_order():
    waiting = {"g-0007", "g-0003", "g-0005"}
    assert admitted(waiting, queued=1, reserved=0, limit=3) == ["g-0003", "g-0005"]
    assert admitted(waiting, queued=1, reserved=1, limit=3) == ["g-0003"]
    assert admitted(waiting, queued=3, reserved=0, limit=3) == []
    assert admitted(waiting, queued=5, reserved=0, limit=3) == []  # lowered limit, no error


def test_a_waiter_let_through_holds_its_slot_until_its_job_is_queued_or_it_expires():
    reservations = Reservations(ttl_s=60)
    reservations.add("g-0003", now=0.0)
    reservations.add("g-0004", now=0.0)
    assert reservations.count([], now=1.0) == 2
    assert reservations.count(["jf-k.g-0003.t1"], now=2.0) == 1
    assert reservations.count([], now=61.0) == 0


# --- the gate ----------------------------------------------------------------------------------
def test_without_limits_the_gate_submits_at_once_and_takes_no_lock(tmp_path):
    gate = SubmissionGate(("slurm", None, None), None, tmp_path / "limits")
    assert gate.submit(lambda: "42") == "42"
    assert not (tmp_path / "limits").exists()


def test_at_the_groups_limit_nothing_is_submitted(tmp_path):
    gate = SubmissionGate(("slurm", None, None), None, tmp_path)
    calls: list[int] = []
    assert gate.submit(lambda: calls.append(1), count=lambda: 2, limit=2) is None
    assert calls == []
    assert gate.submit(lambda: "42", count=lambda: 1, limit=2) == "42"


def test_the_rate_spaces_submissions_of_separate_gates_through_the_state_file(tmp_path):
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    def gate() -> SubmissionGate:  # a new task: only the files carry the last submission
        return SubmissionGate(
            ("slurm", None, None), 4.0, tmp_path, clock=lambda: now[0], sleep=sleep
        )

    gate().submit(lambda: None)
    now[0] += 0.1
    gate().submit(lambda: None)
    assert slept == [pytest.approx(0.15)]
    state = json.loads(next(tmp_path.glob("cluster-*.json")).read_text())
    assert state["last_sbatch_start"] == pytest.approx(1000.25)


def test_clusters_have_limits_of_their_own(tmp_path):
    now = [1000.0]
    slept: list[float] = []
    for key in (("slurm", None, None), ("slurm", None, "login2")):
        SubmissionGate(key, 1.0, tmp_path, clock=lambda: now[0], sleep=slept.append).submit(
            lambda: None
        )
    assert slept == []


def test_an_unusable_limits_directory_says_which_and_how_to_fix_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    gate = SubmissionGate(("slurm", None, None), 1.0, blocker / "limits")
    with pytest.raises(JobForgeError, match="JOBFORGE_LIMITS_DIR"):
        gate.submit(lambda: None)


# --- real processes at once ------------------------------------------------------------------
def _submitter(
    directory: str, rate: float | None, limit: int | None, queue: str, n: int, sbatch_s: float
) -> None:
    """One submit task: `n` submissions through the gate; each sbatch (taking `sbatch_s`:
    a race without the lock would show) appends a line to `queue` (the shared 'SLURM
    queue'), which `count` reads: the start the gate recorded for it (what the rate spaces),
    its own start and its end."""
    gate = SubmissionGate(("slurm", None, None), rate, Path(directory))
    path = Path(queue)
    state = Path(directory) / f"{cluster_stem(gate.cluster)}.json"

    def sbatch() -> None:
        started = time.time()
        recorded = read_last_start(state) if rate else started
        time.sleep(sbatch_s)
        with path.open("a") as handle:
            handle.write(f"{recorded} {started} {time.time()}\n")

    def count() -> int:
        return len(path.read_text().splitlines()) if path.exists() else 0

    for _ in range(n):
        gate.submit(sbatch, count=count if limit else None, limit=limit)


def _run_at_once(
    tmp_path: Path, processes: int, rate: float | None, limit: int | None, n: int, sbatch_s: float
) -> list[tuple[float, ...]]:
    """(recorded start, start, end) of every sbatch, in the order they started."""
    queue = tmp_path / "queue"
    ctx = multiprocessing.get_context("spawn")
    args = (str(tmp_path / "limits"), rate, limit, str(queue), n, sbatch_s)
    procs = [ctx.Process(target=_submitter, args=args) for _ in range(processes)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    calls = [tuple(float(t) for t in line.split()) for line in queue.read_text().splitlines()]
    return sorted(calls, key=lambda call: call[1])


def test_processes_submitting_at_once_never_exceed_the_rate(tmp_path):
    calls = _run_at_once(tmp_path, processes=3, rate=10.0, limit=None, n=3, sbatch_s=0.02)
    assert len(calls) == 9
    # The starts the gate recorded (read back inside each sbatch, under the lock) are spaced
    # by the rate; each sbatch started after its own was recorded, and after the one before
    # it ended (one at a time). Without the lock they would be ~0 apart. Load only widens
    # these gaps, never narrows them.
    recorded = [call[0] for call in calls]
    assert all(b - a >= 0.1 - 0.001 for a, b in zip(recorded, recorded[1:], strict=False))
    assert all(start >= mark for mark, start, _ in calls)
    assert all(b[1] >= a[2] for a, b in zip(calls, calls[1:], strict=False))


def test_processes_submitting_at_once_never_exceed_the_groups_limit(tmp_path):
    calls = _run_at_once(tmp_path, processes=6, rate=None, limit=2, n=1, sbatch_s=0.3)
    assert len(calls) == 2


# --- configuration -----------------------------------------------------------------------------
def limited(limit: int | None) -> dict:
    return {
        "jobs": [{"name": f"j{i}", "command": "true", "submission_group": "g"} for i in range(4)],
        "submission_groups": [
            {"name": "g", "batching": {"per_node_batch_size": 2}, "max_concurrent_batches": limit}
        ],
    }


def test_every_batch_of_a_group_carries_its_max_concurrent_batches():
    render = render_config(parse_configuration(limited(3)))
    assert [b.max_concurrent_batches for b in render.batches] == [3, 3]


def test_max_concurrent_batches_is_at_least_one():
    with pytest.raises(ConfigError, match="max_concurrent_batches"):
        parse_configuration(limited(0))


def test_jade_max_nodes_is_the_limit():
    jade = {
        "jobs": [{"job_id": 1, "command": "true", "submission_group": "g"}],
        "submission_groups": [{"name": "g", "submitter_params": {"max_nodes": 4}}],
    }
    config, _ = import_jade(jade)
    assert config.group("g").max_concurrent_batches == 4


def test_the_submit_task_gets_its_groups_limit_and_the_cluster_its_rate():
    from airflow_jobforge.dag.factory import build_dag

    dag = build_dag(
        parse_configuration(limited(1)),
        "d",
        backend="slurm",
        output_dir="/tmp/o",
        submit_rate_limit=2,
    )
    submit = dag.task_dict["g.submit_0000"]
    assert submit.max_concurrent_batches == 1
    assert submit.cluster["submit_rate_limit"] == 2.0


def test_a_bad_rate_is_refused_when_the_dag_is_built():
    from airflow_jobforge.dag.factory import build_dag

    with pytest.raises(JobForgeError, match="submit_rate_limit"):
        build_dag(parse_configuration(limited(None)), "d", output_dir="/o", submit_rate_limit=0)


def test_a_rate_in_the_slurm_connection_applies(monkeypatch):
    from airflow_jobforge.hooks.slurm import ClusterSettings

    monkeypatch.setenv(
        "AIRFLOW_CONN_HPC",
        json.dumps({"conn_type": "slurm", "extra": {"submit_rate_limit": "0.5"}}),
    )
    settings = ClusterSettings(backend="slurm", slurm_conn_id="hpc").resolved()
    assert settings.submit_rate_limit == 0.5
    assert settings.gate().rate == 0.5


# --- the wait for a slot, on the local backend's real processes --------------------------------
class CountedListings:
    """The triggers' client, counting their looks at the queue: a waiter that stays put is
    proved to have looked (and stayed) that many times, not merely given time to."""

    def __init__(self, monkeypatch) -> None:
        from airflow_jobforge.hooks.slurm import SlurmHook

        self.looks = 0
        real = SlurmHook.get_async_client
        monkeypatch.setattr(SlurmHook, "get_async_client", lambda hook: self._wrap(real(hook)))

    def _wrap(self, client):
        counter = self

        class Counted:
            async def queued(self, prefix):
                counter.looks += 1
                return await client.queued(prefix)

            async def close(self):
                await client.close()

        return Counted()


async def until(condition, timeout: float = 30.0) -> None:
    """Wait for `condition`, with a deadline that only ends a failing test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"not within {timeout}s"
        await asyncio.sleep(0.01)


def test_a_waiting_batch_goes_once_a_batch_of_its_group_left_the_queue(tmp_path, monkeypatch):
    from airflow_jobforge.triggers.queue_slot import QueueSlotTrigger

    monkeypatch.setenv("JOBFORGE_LOCAL_STATE", str(tmp_path))
    listings = CountedListings(monkeypatch)
    key = "abcdefabcdef"
    sleepers = {}
    for batch in ("g-0000", "g-0001", "other-0000"):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        sleepers[batch] = proc
        (tmp_path / f"{key}.{batch}.t1.json").write_text(
            json.dumps({"job_id": f"local-{proc.pid}"})
        )
    trigger = QueueSlotTrigger({"backend": "local"}, key, "g", "g-0002", limit=2, poll_interval=0.2)

    async def scenario():
        waiting = asyncio.create_task(trigger.run().__anext__())
        await until(lambda: listings.looks >= 3)
        # Three looks at g's two batches (the other group's takes no slot of g): still waiting.
        assert not waiting.done()
        sleepers["g-0000"].kill()
        sleepers["g-0000"].wait()
        return await asyncio.wait_for(waiting, 30)

    try:
        event = asyncio.run(scenario())
        assert event.payload == {"batch": "g-0002", "queued": 1}
    finally:
        for proc in sleepers.values():
            proc.kill()
            proc.wait()


def test_the_trigger_serializes_everything_it_needs():
    from airflow_jobforge.triggers.queue_slot import QueueSlotTrigger

    trigger = QueueSlotTrigger({"backend": "local"}, "k", "g", "g-0002", 2, 3.0)
    path, kwargs = trigger.serialize()
    again = QueueSlotTrigger(**kwargs)
    assert path == "airflow_jobforge.triggers.queue_slot.QueueSlotTrigger"
    assert again.serialize() == (path, kwargs)


def test_of_two_batches_waiting_for_one_slot_only_the_first_goes(tmp_path, monkeypatch):
    """Triggers of one triggerer share the queue listing: a free slot wakes one waiter, the
    lowest batch, not every waiter of the group."""
    from airflow_jobforge.triggers.queue_slot import QueueSlotTrigger

    monkeypatch.setenv("JOBFORGE_LOCAL_STATE", str(tmp_path))
    listings = CountedListings(monkeypatch)
    key = "abcdefabcdef"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (tmp_path / f"{key}.g-0000.t1.json").write_text(json.dumps({"job_id": f"local-{proc.pid}"}))

    async def both() -> tuple[set[str], set[str]]:
        triggers = [
            QueueSlotTrigger({"backend": "local"}, key, "g", batch, limit=2, poll_interval=0.2)
            for batch in ("g-0003", "g-0002")
        ]
        tasks = {asyncio.create_task(t.run().__anext__()): t.batch for t in triggers}
        await asyncio.wait(tasks, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        # The one that went holds the free slot: the other stays through three more looks.
        looked = listings.looks
        await until(lambda: listings.looks >= looked + 3)
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return {tasks[t] for t in tasks if t not in pending}, {tasks[t] for t in pending}

    try:
        went, waiting = asyncio.run(both())
    finally:
        proc.kill()
        proc.wait()
    assert (went, waiting) == ({"g-0002"}, {"g-0003"})
