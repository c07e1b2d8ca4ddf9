"""One status query per poll for every job waited on in a process (the triggerer).

N deferred sensors on one cluster register their job here; a single loop asks the cluster
for all of them at once (one squeue), hands each watcher its job's status, and backs off
(x1.5 per quiet poll, up to `max_interval`) while nothing changes, resetting when something
does or a new job arrives. Pollers are per (event loop, cluster): the triggerer has one loop, while
`dag.test()` runs each trigger in a fresh loop.

Backing off makes a long batch's end late by up to `max_interval`. Where the batches'
exit-code files are visible to this process (the SLURM CLI or the local backend runs here,
so output dirs are local or on the cluster's shared file system), the poller also looks for
them every `probe_interval` between polls: a stat per waiting job, no request to SLURM. A new
exit file means the batch script just ended, so the cluster is asked at once, then again
shortly after while SLURM still shows the job completing. Over SSH there is no probe.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field

from airflow_jobforge.slurm.client import GRACE_S, StatusTracker
from airflow_jobforge.slurm.protocol import AsyncBatchClient
from airflow_jobforge.slurm.states import JobStatus

log = logging.getLogger(__name__)

# Gentle: a batch's end is noticed at most half an interval late after a quiet stretch.
BACKOFF = 1.5
# How long a poller with nothing to watch keeps its connection (see `_linger`).
LINGER_S = 120.0
# After an exit file appears: SLURM needs a moment to show the job COMPLETING -> COMPLETED.
ENDING_FIRST_DELAY = 0.2


@dataclass
class _Watch:
    exit_file: str | None
    queue: asyncio.Queue[JobStatus] = field(default_factory=asyncio.Queue)
    last: tuple[str, str] | None = None
    ending: bool = False  # its exit file exists: the job is ending, poll soon
    done: bool = False  # a terminal status was handed out


class SharedPoller:
    _registry: dict[tuple[int, Hashable], SharedPoller] = {}

    def __init__(
        self,
        client: AsyncBatchClient,
        min_interval: float = 2.0,
        max_interval: float = 10.0,
        grace_s: float = GRACE_S,
        probe_interval: float | None = None,
        linger_s: float = LINGER_S,
    ) -> None:
        self.client = client
        self.linger_s = linger_s
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.probe_interval = probe_interval
        self.tracker = StatusTracker(grace_s=grace_s)
        self.watches: dict[str, _Watch] = {}
        self.polls = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_cluster(cls, key: Hashable, make: Callable[[], SharedPoller]) -> SharedPoller:
        loop_key = (id(asyncio.get_running_loop()), key)
        poller = cls._registry.get(loop_key)
        if poller is None or poller._task is None or poller._task.done():
            if poller is not None and poller.watches:
                make_new = make()
                make_new.watches = poller.watches
                poller = make_new
            else:
                poller = make()
            cls._registry[loop_key] = poller
            log.info("status poller started for cluster %s", key)
            poller._task = asyncio.get_running_loop().create_task(poller._loop(loop_key))
        return poller

    async def watch(self, job_id: str, exit_file: str | None) -> AsyncIterator[JobStatus]:
        """Every new status of `job_id` until the caller stops iterating."""
        watch = self.watches.setdefault(job_id, _Watch(exit_file))
        self._wake.set()
        try:
            while True:
                yield await watch.queue.get()
        finally:
            self.watches.pop(job_id, None)

    async def _pause(self, interval: float) -> str | None:
        """Sleep until the next poll: `interval` elapsed (None), a new job ("job"), or an exit
        file appeared ("ending")."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + interval
        while (remaining := deadline - loop.time()) > 0:
            step = remaining if self.probe_interval is None else min(remaining, self.probe_interval)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=step)
                return "job"
            except asyncio.TimeoutError:
                pass
            if self.probe_interval is not None and await self._probe():
                return "ending"
        return None

    async def _probe(self) -> bool:
        """Mark the watches whose exit file appeared; True if any did. Stats run in a thread:
        a slow shared file system must not stall the event loop (other triggers)."""
        files = {
            job_id: w.exit_file
            for job_id, w in self.watches.items()
            if w.exit_file and not w.ending and not w.done
        }
        if not files:
            return False
        appeared = await asyncio.to_thread(
            lambda: [job_id for job_id, path in files.items() if os.path.exists(path)]
        )
        for job_id in appeared:
            if (watch := self.watches.get(job_id)) is not None:
                watch.ending = True
        return bool(appeared)

    async def _linger(self) -> bool:
        """With nothing to watch, keep the connection for `linger_s`: the next batch's wait
        defers moments later, and over SSH a new poller would be a new login. True when a
        job arrived in time."""
        self._wake.clear()
        if self.watches:
            return True
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=self.linger_s)
        except asyncio.TimeoutError:
            return bool(self.watches)
        return True

    async def _loop(self, loop_key: tuple[int, Hashable]) -> None:
        interval = self.min_interval
        ending_delay = ENDING_FIRST_DELAY
        try:
            while True:
                if not self.watches:
                    if not await self._linger():
                        break
                    continue
                self._wake.clear()
                ids = list(self.watches)
                changed = False
                try:
                    exit_files = {i: w.exit_file for i, w in self.watches.items() if w.exit_file}
                    statuses = self.tracker.resolve(await self.client.status(ids, exit_files))
                    self.polls += 1
                except Exception:  # the cluster is unreachable now: keep waiting, backed off
                    log.exception("status poll of %d SLURM jobs failed", len(ids))
                    statuses = {}
                for job_id, status in statuses.items():
                    watch = self.watches.get(job_id)
                    if watch is None:
                        continue
                    if watch.last != (status.state, status.outcome.value):
                        watch.last = (status.state, status.outcome.value)
                        watch.done = status.terminal
                        watch.queue.put_nowait(status)
                        changed = True
                if any(w.ending and not w.done for w in self.watches.values()):
                    interval, ending_delay = ending_delay, min(ending_delay * 2, self.min_interval)
                elif changed:
                    interval = self.min_interval
                else:
                    interval = min(interval * BACKOFF, self.max_interval)
                woken = await self._pause(interval)
                if woken == "job":
                    interval = self.min_interval  # a new job: poll it soon
                elif woken == "ending":
                    ending_delay = ENDING_FIRST_DELAY
        finally:
            if self._registry.get(loop_key) is self:
                del self._registry[loop_key]
            try:
                await self.client.close()
            except Exception:  # a broken connection may fail to close, too
                pass
