"""BlockersTrigger: a generated stage's batch waits here until the batches it follows ended.

A static config's DAG says `wait_A >> submit_B` for `blocked_by` across batches. A generated
stage's batches are one mapped task group (their number is known only at run time), whose
instances cannot have edges between each other: so B's submit task defers here until every
job of A has a result record, which is what `wait_A` guarantees when it ends (the node runner
writes them, or the wait completes them as `missing`). The node runner then reads A's records
to cancel B's jobs whose blockers failed, as in a static stage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_jobforge.hooks.slurm import ClusterSettings, SlurmHook
from airflow_jobforge.triggers.resume import hold


class BlockersTrigger(BaseTrigger):
    """Fires `{"status": "ready"}` once every job of `after` has a record in `run_dir`, or
    `{"status": "pending", "missing": N}` after `timeout` seconds, so that the task can look at
    its blockers' wait tasks (a wait that failed without records must not block forever).

    :param cluster: `ClusterSettings` as a dict, already resolved by the task that defers
    :param run_dir: the stage's run dir (where the records are)
    :param after: batch name -> its job names, the batches this one follows
    :param poll_interval: seconds between looks at the records
    :param timeout: seconds before handing back to the task; None: never
    :param not_before: epoch seconds before which it does not look (see triggers/resume.py)
    """

    def __init__(
        self,
        cluster: dict[str, Any],
        run_dir: str,
        after: dict[str, list[str]],
        poll_interval: float = 5.0,
        timeout: float | None = None,
        not_before: float | None = None,
    ) -> None:
        super().__init__()
        self.cluster = cluster
        self.run_dir = run_dir
        self.after = after
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.not_before = not_before

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "cluster": self.cluster,
                "run_dir": self.run_dir,
                "after": self.after,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "not_before": self.not_before,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await hold(self, self.not_before)
        client = SlurmHook.from_settings(ClusterSettings(**self.cluster)).get_async_client()
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        waiting = {batch: set(jobs) for batch, jobs in self.after.items()}
        try:
            while True:
                for batch in list(waiting):
                    records = await client.read_results(self.run_dir, batch)
                    waiting[batch] -= records.keys()
                    if not waiting[batch]:
                        del waiting[batch]
                if not waiting:
                    yield TriggerEvent({"status": "ready"})
                    return
                if deadline is not None and loop.time() >= deadline:
                    missing = sum(len(jobs) for jobs in waiting.values())
                    yield TriggerEvent({"status": "pending", "missing": missing})
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            await client.close()
