"""SlurmJobTrigger: waits for one SLURM (or local-backend) job through the shared poller.

It starts two ways. A task's `defer()` hands it the job. Or the scheduler starts a wait task
right in the triggerer (`start_from_trigger`, see `SlurmJobSensor`) with only the submit
task's id: the trigger then reads the job from that task's XCom itself. A wait's first try
thus costs no worker execution at all, only its resume does: ~100 task executions fewer per
100-batch run, each ~0.2 s of CPU across the worker, API server, scheduler and database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_jobforge.hooks.slurm import ClusterSettings, SlurmHook
from airflow_jobforge.rundir import ResultRecord
from airflow_jobforge.rundir.claims import Claim, chunks_without_records, claimed_away
from airflow_jobforge.rundir.completion import completion_file, record_lines, unrecorded
from airflow_jobforge.rundir.conclusion import TAIL_LINES, Conclusion, job_tail_paths
from airflow_jobforge.rundir.events import (
    CANCELED_BY_USER,
    Event,
    event_text,
    events_file,
)
from airflow_jobforge.slurm.client import GRACE_S
from airflow_jobforge.slurm.protocol import AsyncBatchClient
from airflow_jobforge.slurm.request import SubmittedData, job_names_of, job_places_of, slim_job
from airflow_jobforge.slurm.sharing import AIRFLOW_SIDE
from airflow_jobforge.slurm.states import JobStatus, batch_ended_event
from airflow_jobforge.triggers.poller import SharedPoller
from airflow_jobforge.triggers.resume import hold

# Exit files are looked for this often where they are visible (no SSH); see poller.py.
EXIT_FILE_PROBE_S = 0.5
# A trigger the scheduler started reads its job this long at most, then leaves it to a worker.
START_READ_TIMEOUT_S = 60.0
# Shielded kills in flight (a task the loop only references weakly could be collected).
_killing: set[asyncio.Future[None]] = set()


class SlurmJobTrigger(BaseTrigger):
    """Fires one event when a SLURM job reaches a final state: its state, exit code, reason
    and outcome. Every trigger of a triggerer waiting on the same cluster shares one poller,
    so N waiting batches cost one `squeue` per poll, not N.

    :param job_id: the SLURM job id (or the local backend's id)
    :param exit_file: the batch's exit-code file, the truth when accounting is off or lags
    :param cluster: `ClusterSettings` as a dict, already resolved by the task that defers
    :param poll_interval: seconds between status queries (backing off to max_poll_interval)
    :param max_poll_interval: the longest wait between two status queries, in seconds
    :param grace_s: how long a job no SLURM source knows may stay unknown before it fails
    :param echo: data handed back unchanged in the event (the submit task's XCom)
    :param not_before: epoch seconds before which no event fires (triggers/resume.py says
        why); None: at once
    :param submit_task_id: started by the scheduler without a job (`job_id` None): the task
        whose XCom names it. The first try waits for that job; a later try's event says
        `start`, and the worker's `execute` decides (it may resubmit after NODE_FAIL)
    """

    def __init__(
        self,
        job_id: str | None,
        exit_file: str | None,
        cluster: dict[str, Any],
        poll_interval: float = 2.0,
        max_poll_interval: float = 10.0,
        grace_s: float = GRACE_S,
        echo: SubmittedData | None = None,
        not_before: float | None = None,
        submit_task_id: str | None = None,
    ) -> None:
        super().__init__()
        self.submit_task_id = submit_task_id
        self.not_before = not_before
        # Returned in the event: dag.test() drops defer() kwargs, the triggerer does not.
        self.echo = echo
        self.job_id = job_id
        self.exit_file = exit_file
        self.cluster = cluster
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.grace_s = grace_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "exit_file": self.exit_file,
                "cluster": self.cluster,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "grace_s": self.grace_s,
                "echo": self.echo,
                "not_before": self.not_before,
                "submit_task_id": self.submit_task_id,
            },
        )

    def _hook(self) -> SlurmHook:
        return SlurmHook.from_settings(ClusterSettings(**self.cluster))

    def _poller(self) -> SharedPoller:
        settings = ClusterSettings(**self.cluster)
        return SharedPoller.for_cluster(
            settings.key,
            lambda: SharedPoller(
                self._hook().get_async_client(),
                self.poll_interval,
                self.max_poll_interval,
                self.grace_s,
                probe_interval=None if settings.ssh_conn_id else EXIT_FILE_PROBE_S,
            ),
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.job_id is None:
            reason = await self._start()
            if reason is not None:
                self.log.info("%s: the task's worker takes over", reason)
                yield TriggerEvent({"start": reason})
                return
        poller = self._poller()
        async for status in poller.watch(self.job_id, self.exit_file):
            self.log.info(
                "SLURM job %s: %s%s",
                self.job_id,
                status.state,
                f" ({status.reason})" if status.reason else "",
            )
            if status.terminal:
                held = await hold(self, self.not_before)
                if held:
                    self.log.info(
                        "SLURM job %s: event held %.1f s (just deferred)", self.job_id, held
                    )
                payload = asdict(status)
                payload["outcome"] = status.outcome.value
                payload["echo"] = self.echo
                conclusion = None
                if self.cluster.get("ssh_conn_id"):
                    conclusion = await self._conclude(poller.client, status)
                if conclusion is not None:
                    payload["conclusion"] = conclusion.to_dict()
                yield TriggerEvent(payload)
                return

    async def _start(self) -> str | None:
        """A trigger the scheduler started: the job from the submit task's XCom and the
        cluster's `slurm` connection resolved, as `SlurmJobSensor` does before it defers.
        Returns why the worker must decide instead (a retry, no job in the XCom), or None."""
        from airflow.sdk.execution_time.xcom import XCom
        from asgiref.sync import sync_to_async

        ti = getattr(self, "task_instance", None)
        if ti is None or not self.submit_task_id:
            return "no task instance or submit task to read the job from"
        if ti.try_number > 1:
            return f"try {ti.try_number}: an earlier try's job may need resubmitting"
        read = sync_to_async(XCom.get_one)(
            key="return_value",
            dag_id=ti.dag_id,
            task_id=self.submit_task_id,
            run_id=ti.run_id,
            map_index=-1,
        )
        try:
            submitted = await asyncio.wait_for(read, timeout=START_READ_TIMEOUT_S)
            if not submitted or not submitted.get("job_id"):
                return f"no SLURM job in the XCom of {self.submit_task_id}"
            resolve = sync_to_async(ClusterSettings(**self.cluster).resolved)()
            settings = await asyncio.wait_for(resolve, timeout=START_READ_TIMEOUT_S)
        except Exception as exc:  # the API server or a connection away: the worker retries
            return f"the job or the cluster's settings not read ({exc!r})"
        self.cluster = asdict(settings)
        self.echo = slim_job(submitted)
        self.job_id, self.exit_file = submitted["job_id"], submitted.get("exit_file")
        self.log.info("waiting for SLURM job %s (stdout %s)", self.job_id, submitted.get("stdout"))
        return None

    async def _conclude(self, client: AsyncBatchClient, status: JobStatus) -> Conclusion | None:
        """The batch's records, log tails and `batch_ended` event, through the poller's open
        connection (results/conclusion.py says why); None when this is no batch's wait or
        it fails (the wait task then fetches them itself)."""
        job = self.echo or {}
        request = job.get("request") or {}
        run_dir, spec = request.get("output_dir"), request.get("batch") or {}
        batch = spec.get("batch")
        if not run_dir or not batch:
            return None
        try:
            records = await client.read_results(run_dir, batch)
            names = job_names_of(spec)
            paths = [p for p in (job.get("stdout"), job.get("stderr")) if p]
            paths += job_tail_paths(run_dir, names, records)
            tails = await client.tails(paths, TAIL_LINES)
            event = batch_ended_event(batch, job.get("job_id"), status)
            await client.append_text(
                str(events_file(run_dir, f"airflow-{batch}")), event_text([event])
            )
        except Exception as exc:
            self.log.warning("SLURM job %s: results not gathered: %s", self.job_id, exc)
            return None
        return Conclusion(records=records, tails=tails, event_written=True)

    async def on_kill(self) -> None:
        """The user killed the waiting task (mark failed/success, clear): cancel the job.

        Airflow 3.3 also calls on_kill when a triggerer merely drops a trigger that was
        reassigned to another triggerer (its `update_triggers` cancels every running trigger
        it was not asked for, with the user-action message). The job is healthy then and its
        task instance is still deferred: leave the job alone.

        The triggerer repeats the cancellation of a trigger at every state sync until it has
        ended, which would cut an on_kill short that takes longer than a sync (20 killed at
        once, measured: most never reached scancel): the work is shielded and runs to its end.
        """
        work = asyncio.ensure_future(self._kill())
        _killing.add(work)
        work.add_done_callback(_killing.discard)
        await asyncio.shield(work)

    async def _kill(self) -> None:
        if self.job_id is None:  # killed before it read its job: the submit's XCom names it
            self.log.info("no SLURM job read yet: nothing canceled")
            return
        try:
            if await self._still_deferred():
                self.log.info("SLURM job %s: trigger reassigned, not canceled", self.job_id)
                return
            client = self._hook().get_async_client()
            try:
                await asyncio.wait_for(client.cancel([self.job_id]), timeout=60)
                self.log.info("canceled SLURM job %s", self.job_id)
                await asyncio.wait_for(self._record_cancel(client), timeout=60)
            finally:
                await client.close()
        except Exception:
            self.log.exception("SLURM job %s: cancelling failed", self.job_id)
            raise

    async def _record_cancel(self, client: AsyncBatchClient) -> None:
        """Nothing is lost: the batch's jobs without a record (it was pending, or they had
        not started) are recorded canceled, and the event log says a user canceled it. A
        running batch's runner records its own jobs on SIGTERM, later, and its records win."""
        request = (self.echo or {}).get("request") or {}
        run_dir, spec = request.get("output_dir"), request.get("batch") or {}
        if not run_dir or not spec.get("batch"):
            return
        batch = spec["batch"]
        try:
            records = await client.read_results(run_dir, batch)
            names = job_names_of(spec)
            if spec.get("share"):  # what other batches took is theirs to record
                names = await self._secure(client, run_dir, spec, records)
            late = unrecorded(
                names,
                records,
                batch=batch,
                status="canceled",
                reason="canceled by user (the run or its wait task was stopped)",
                hpc_job_id=self.job_id,
            )
            if late:
                await client.append_text(completion_file(run_dir, batch), record_lines(late))
            event = Event(
                CANCELED_BY_USER,
                batch=batch,
                hpc_job_id=self.job_id,
                message=f"SLURM job canceled; {len(late)} job(s) without a record: canceled",
            )
            await client.append_text(
                str(events_file(run_dir, f"airflow-{batch}")), event_text([event])
            )
        except Exception as exc:  # the cancellation itself stands
            self.log.warning("SLURM job %s: cancel not recorded: %s", self.job_id, exc)

    async def _secure(
        self,
        client: AsyncBatchClient,
        run_dir: str,
        spec: dict[str, Any],
        records: dict[str, ResultRecord],
    ) -> list[str]:
        """The jobs of a sharing batch this cancel records: first the chunks of its jobs
        without a record that nobody claimed are claimed for the batch (slurm.sharing's
        `secure_unrecorded`, asynchronously), so no other batch starts one of them later;
        what other batches hold is theirs to run and record."""
        batch = spec["batch"]
        places = job_places_of(spec)
        size = int(spec.get("claim_chunk") or 1)
        chunks = chunks_without_records(places, size, records)
        claim = Claim(batch, self.job_id, AIRFLOW_SIDE)
        claims = await client.claim_chunks(run_dir, batch, chunks, claim)
        away = claimed_away(claims, batch, size, places)
        return [name for name, _ in places if name not in away]

    async def _still_deferred(self) -> bool:
        """Whether the task instance still waits in the deferred state (no user action).
        Unknown (no task instance: a trigger run by hand or dag.test) counts as a kill."""
        ti = getattr(self, "task_instance", None)
        if ti is None:
            return False
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
        from asgiref.sync import sync_to_async

        try:
            states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id]
            )
        except Exception as exc:  # cannot tell: never cancel a job that may be healthy
            self.log.warning("SLURM job %s: state unknown (%s), not canceled", self.job_id, exc)
            return True
        state = states.get(ti.run_id, {}).get(ti.task_id)
        return str(state) == "deferred"
