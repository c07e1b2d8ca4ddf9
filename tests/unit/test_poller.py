"""SharedPoller with a scripted client: one query per poll, back-off, and the exit-file probe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_jobforge.slurm.states import JobStatus, classify_state
from airflow_jobforge.triggers.poller import ENDING_FIRST_DELAY, SharedPoller


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


async def until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Wait for `condition` to hold: what a step waits for, not a guess at how long the loop
    needs on a loaded machine; the deadline only ends a test that is failing anyway."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"not within {timeout}s"
        await asyncio.sleep(0.005)


def test_one_query_per_poll_for_all_watchers() -> None:
    async def scenario() -> ScriptedClient:
        client = ScriptedClient({str(i): "RUNNING" for i in range(50)})
        poller = SharedPoller(client, min_interval=0.05, max_interval=0.05)
        waiters = [asyncio.create_task(_first_terminal(poller, str(i), None)) for i in range(50)]
        await until(lambda: len(poller.watches) == 50)
        _start(poller)
        await until(lambda: len(client.queries) >= 3)
        client.states.update({str(i): "COMPLETED" for i in range(50)})
        await asyncio.wait_for(asyncio.gather(*waiters), timeout=30)
        return client

    client = asyncio.run(scenario())
    assert len(client.queries) >= 4
    assert all(len(ids) == 50 for _, ids in client.queries)  # every poll asks for all jobs


def test_backs_off_while_nothing_changes() -> None:
    """The pauses the poller asks for grow x1.5 per quiet poll up to the cap, and it really
    pauses that long: gaps between queries are never shorter (load only lengthens them)."""

    async def scenario() -> tuple[list[float], list[float]]:
        client = ScriptedClient({"1": "RUNNING"})
        poller = SharedPoller(client, min_interval=0.05, max_interval=0.4)
        pauses: list[float] = []
        real_pause = poller._pause

        async def pause(interval: float) -> str | None:
            pauses.append(interval)
            return await real_pause(interval)

        poller._pause = pause  # type: ignore[method-assign]
        waiter = asyncio.create_task(_first_terminal(poller, "1", None))
        await until(lambda: "1" in poller.watches)
        _start(poller)
        await until(lambda: len(client.queries) >= 9)
        waiter.cancel()
        poller._task.cancel()
        return pauses, [t for t, _ in client.queries]

    pauses, times = asyncio.run(scenario())
    # The first poll is news (a first status): the minimum; then x1.5 per quiet poll, capped.
    expected = [0.05]
    while len(expected) < 8:
        expected.append(min(expected[-1] * 1.5, 0.4))
    assert pauses[:8] == pytest.approx(expected)
    assert max(pauses) == pytest.approx(0.4)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(gap >= pause - 0.005 for gap, pause in zip(gaps, pauses, strict=False))


def test_exit_file_makes_the_end_noticed_before_the_next_backed_off_poll(tmp_path: Path) -> None:
    exit_file = tmp_path / "job.exit"

    class Completing(ScriptedClient):
        """SLURM shows the ended job COMPLETING for two polls, then COMPLETED."""

        completing = 0

        async def status(self, ids, exit_files):
            got = await super().status(ids, exit_files)
            if self.states["7"] == "COMPLETING":
                self.completing += 1
                if self.completing == 2:
                    self.states["7"] = "COMPLETED"
            return got

    async def scenario(probe: float | None, patience: float) -> tuple[float, list[float]]:
        client = Completing({"7": "RUNNING"})
        # The next poll is a minute away: only the probe can notice the end before it.
        poller = SharedPoller(client, min_interval=60.0, max_interval=60.0, probe_interval=probe)
        waiter = asyncio.create_task(_first_terminal(poller, "7", str(exit_file)))
        await until(lambda: "7" in poller.watches)
        _start(poller)
        await until(lambda: len(client.queries) == 1)
        # The batch script wrote its exit file; SLURM shows COMPLETING for a moment.
        exit_file.write_text("0\n")
        client.states["7"] = "COMPLETING"
        ended = time.monotonic()
        try:
            noticed = await asyncio.wait_for(waiter, timeout=patience)
        except asyncio.TimeoutError:
            noticed = float("inf")
        finally:
            poller._task.cancel()
        return noticed - ended, [t for t, _ in client.queries]

    delay, times = asyncio.run(scenario(0.1, patience=30))
    assert delay < 30  # not the poll a minute later
    # The first poll; then one at once, and short pauses (not the probe's pace) while
    # SLURM still shows COMPLETING.
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times[1:], times[2:], strict=False)]
    assert all(gap >= ENDING_FIRST_DELAY - 0.005 for gap in gaps)

    exit_file.unlink()
    delay, times = asyncio.run(scenario(None, patience=2))
    assert delay == float("inf") and len(times) == 1  # without the probe: a minute away


def test_a_new_job_is_polled_at_once() -> None:
    async def scenario() -> float:
        client = ScriptedClient({"1": "RUNNING", "2": "COMPLETED"})
        # The next poll is a minute away: only the new job's arrival can bring one sooner.
        poller = SharedPoller(client, min_interval=60.0, max_interval=60.0)
        first = asyncio.create_task(_first_terminal(poller, "1", None))
        await until(lambda: "1" in poller.watches)
        _start(poller)
        await until(lambda: len(client.queries) == 1)
        added = time.monotonic()
        noticed = await asyncio.wait_for(_first_terminal(poller, "2", None), timeout=30)
        first.cancel()
        poller._task.cancel()
        return noticed - added

    assert asyncio.run(scenario()) < 30
