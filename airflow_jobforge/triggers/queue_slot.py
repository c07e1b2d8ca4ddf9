"""QueueSlotTrigger: a submit task at its group's `max_concurrent_batches` waits here.

Waiting in the triggerer, not in a worker slot: a 100,000-job run may have thousands of
batches waiting for hours. Every trigger of a process waiting on the same cluster shares one
listing of the queue (one squeue per poll interval, however many wait), and only as many
waiters are let through as there are free slots, in batch order (`limits.admitted`): the
others stay deferred instead of resuming only to defer again. The submit task re-checks
under the limits lock when it resumes, so a slot taken meanwhile costs one more deferral,
never a batch over the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_jobforge.hooks.slurm import ClusterSettings, SlurmHook
from airflow_jobforge.slurm.limits import Reservations, admitted, group_pattern
from airflow_jobforge.slurm.protocol import AsyncBatchClient
from airflow_jobforge.slurm.script import JOB_NAME_PREFIX
from airflow_jobforge.triggers.resume import hold


@dataclass
class _Listing:
    """One cluster's queued job names, refreshed at most once per `max_age` for all waiters;
    and, per (run, group), who waits and who was let through."""

    client: AsyncBatchClient
    at: float = float("-inf")
    names: tuple[str, ...] = ()
    users: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    reservations: dict[tuple[str, str], Reservations] = field(default_factory=dict)

    async def current(self, max_age: float) -> tuple[str, ...]:
        async with self.lock:
            loop = asyncio.get_running_loop()
            if loop.time() - self.at >= max_age:
                jobs = await self.client.queued(JOB_NAME_PREFIX)
                self.names = tuple(job.job_name for job in jobs)
                self.at = loop.time()
            return self.names


_listings: dict[tuple[int, Hashable], _Listing] = {}


class QueueSlotTrigger(BaseTrigger):
    """Fires when batch `batch` of DAG run `run_key` may be submitted: fewer than `limit` of
    its group's batches of that run are in the SLURM queue.

    :param cluster: `ClusterSettings` as a dict, already resolved by the task that defers
    :param run_key: the DAG run's key (in every SLURM job name of the run)
    :param group: the submission group
    :param batch: the waiting batch (`<group>-<NNNN>`): waiters go in batch order
    :param limit: the group's `max_concurrent_batches`
    :param poll_interval: seconds between looks at the queue
    :param not_before: epoch seconds before which it does not look (triggers/resume.py says
        why); None: at once
    """

    def __init__(
        self,
        cluster: dict[str, Any],
        run_key: str,
        group: str,
        batch: str,
        limit: int,
        poll_interval: float = 5.0,
        not_before: float | None = None,
    ) -> None:
        super().__init__()
        self.not_before = not_before
        self.cluster = cluster
        self.run_key = run_key
        self.group = group
        self.batch = batch
        self.limit = limit
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "cluster": self.cluster,
                "run_key": self.run_key,
                "group": self.group,
                "batch": self.batch,
                "limit": self.limit,
                "poll_interval": self.poll_interval,
                "not_before": self.not_before,
            },
        )

    def _listing(self) -> tuple[tuple[int, Hashable], _Listing]:
        settings = ClusterSettings(**self.cluster)
        key = (id(asyncio.get_running_loop()), settings.key)
        listing = _listings.get(key)
        if listing is None:
            client = SlurmHook.from_settings(settings).get_async_client()
            listing = _listings[key] = _Listing(client)
        return key, listing

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await hold(self, self.not_before)  # before taking a place among the waiters
        key, listing = self._listing()
        mine = (self.run_key, self.group)
        pattern = group_pattern(self.run_key, self.group)
        listing.users += 1
        waiting = listing.waiting.setdefault(mine, set())
        waiting.add(self.batch)
        try:
            await asyncio.sleep(0)  # triggers started together all register before the first look
            while True:
                names = [n for n in await listing.current(self.poll_interval) if pattern.match(n)]
                reservations = listing.reservations.setdefault(mine, Reservations())
                now = time.monotonic()
                reserved = reservations.count(names, now)
                if self.batch in admitted(waiting, len(names), reserved, self.limit):
                    reservations.add(self.batch, now)
                    self.log.info(
                        "batch %s: %d of %d slots of group %s taken; submitting",
                        self.batch,
                        len(names) + reserved,
                        self.limit,
                        self.group,
                    )
                    yield TriggerEvent({"batch": self.batch, "queued": len(names)})
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            waiting.discard(self.batch)
            listing.users -= 1
            if listing.users == 0 and _listings.get(key) is listing:
                del _listings[key]
                await listing.client.close()
