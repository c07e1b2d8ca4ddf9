"""SharedPoller with a scripted client: one query per poll, back-off, and the exit-file probe."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from airflow_jobforge.slurm.states import JobStatus, classify_state
from airflow_jobforge.triggers.poller import SharedPoller


class ScriptedClient:
    """Answers like squeue from a dict job id -> state; records every query."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states
        self.queries: list[tuple[float, list[str]]] = []

    async def status(self, ids: list[str], exit_files: dict[str, str]) -> dict[str, JobStatus]:
        self.queries.append((time.monotonic(), list(ids)))
        return {i: JobStatus(i, self.states[i], classify_state(self.states[i])) for i in ids}

    async def close(self) -> None:
        pass


async def _first_terminal(poller: SharedPoller, job_id: str, exit_file: str | None) -> float:
    async for status in poller.watch(job_id, exit_file):
        if status.terminal:
            return time.monotonic()
    raise AssertionError("unreachable")


def _start(poller: SharedPoller) -> None:
    poller._task = asyncio.get_running_loop().create_task(poller._loop(("test", id(poller))))


def test_one_query_per_poll_for_all_watchers() -> None:
    async def scenario() -> ScriptedClient:
        client = ScriptedClient({str(i): "RUNNING" for i in range(50)})
        poller = SharedPoller(client, min_interval=0.05, max_interval=0.05)
        waiters = [asyncio.create_task(_first_terminal(poller, str(i), None)) for i in range(50)]
        await asyncio.sleep(0.01)
        _start(poller)
        await asyncio.sleep(0.3)
        client.states.update({str(i): "COMPLETED" for i in range(50)})
        await asyncio.wait_for(asyncio.gather(*waiters), timeout=2)
        return client

    client = asyncio.run(scenario())
    assert len(client.queries) >= 3
    assert all(len(ids) == 50 for _, ids in client.queries[1:])  # every poll asks for all jobs


def test_backs_off_while_nothing_changes() -> None:
    async def scenario() -> list[float]:
        client = ScriptedClient({"1": "RUNNING"})
        poller = SharedPoller(client, min_interval=0.05, max_interval=0.4)
        waiter = asyncio.create_task(_first_terminal(poller, "1", None))
        await asyncio.sleep(0)
        _start(poller)
        await asyncio.sleep(1.5)
        waiter.cancel()
        return [t for t, _ in client.queries]

    times = asyncio.run(scenario())
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[1] > gaps[0] * 1.3  # x1.5 per quiet poll
    assert max(gaps) < 0.4 + 0.1  # capped
    assert len(times) < 1.5 / 0.05  # fewer polls than at the minimum interval


def test_exit_file_makes_the_end_noticed_before_the_next_backed_off_poll(tmp_path: Path) -> None:
    exit_file = tmp_path / "job.exit"

    async def scenario(probe: float | None) -> tuple[float, int]:
        client = ScriptedClient({"7": "RUNNING"})
        # Backed off far beyond the test's patience: only the probe can notice the end.
        poller = SharedPoller(client, min_interval=5.0, max_interval=30.0, probe_interval=probe)
        waiter = asyncio.create_task(_first_terminal(poller, "7", str(exit_file)))
        await asyncio.sleep(0)
        _start(poller)
        await asyncio.sleep(0.3)
        # The batch script wrote its exit file; SLURM shows COMPLETING for a moment.
        exit_file.write_text("0\n")
        client.states["7"] = "COMPLETING"
        ended = time.monotonic()
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, client.states.__setitem__, "7", "COMPLETED")
        try:
            noticed = await asyncio.wait_for(waiter, timeout=3)
        except asyncio.TimeoutError:
            noticed = float("inf")
        finally:
            poller._task.cancel()
        return noticed - ended, len(client.queries)

    delay, queries = asyncio.run(scenario(0.1))
    assert delay < 1.0
    assert queries <= 6  # the poll at once, then a few short ones while COMPLETING

    exit_file.unlink()
    delay, _ = asyncio.run(scenario(None))
    assert delay == float("inf")  # without the probe, the backed-off poll is seconds away


def test_a_new_job_is_polled_at_once() -> None:
    async def scenario() -> float:
        client = ScriptedClient({"1": "RUNNING", "2": "COMPLETED"})
        poller = SharedPoller(client, min_interval=5.0, max_interval=5.0)
        first = asyncio.create_task(_first_terminal(poller, "1", None))
        await asyncio.sleep(0)
        _start(poller)
        await asyncio.sleep(0.2)
        added = time.monotonic()
        noticed = await asyncio.wait_for(_first_terminal(poller, "2", None), timeout=2)
        first.cancel()
        poller._task.cancel()
        return noticed - added

    assert asyncio.run(scenario()) < 0.5
