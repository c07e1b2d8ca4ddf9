"""SlurmSubmitOperator: build and submit one batch, or adopt the job a restart left."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from airflow.sdk import BaseOperator

from airflow_jobforge.airflow_compat import AirflowFailException, AirflowSkipException
from airflow_jobforge.config.models import ContainerParams, SlurmParams
from airflow_jobforge.errors import JobForgeError, SlurmError
from airflow_jobforge.operators.base import (
    ClusterMixin,
    context_attempt,
    context_run_key,
    emit_events,
    job_info,
    killed_by_user,
    run_output_dir,
    task_key,
    with_infra_retries,
)
from airflow_jobforge.planning.selection import drop_unselected_blockers
from airflow_jobforge.rundir.batches import BatchSpec, restrict_batch
from airflow_jobforge.rundir.events import BATCH_ADOPTED, BATCH_SUBMITTED, Event
from airflow_jobforge.slurm.client import SubmittedJob, is_rejection
from airflow_jobforge.slurm.limits import batch_group, count_group_jobs, group_prefix
from airflow_jobforge.slurm.protocol import BatchClient
from airflow_jobforge.slurm.request import SubmittedData, request_to_dict, slim_request
from airflow_jobforge.slurm.resources import apply_overrides
from airflow_jobforge.slurm.script import JOB_NAME_PREFIX, SubmitRequest, sbatch_job
from airflow_jobforge.slurm.states import Outcome
from airflow_jobforge.slurm.tags import submit_tag
from airflow_jobforge.triggers.queue_slot import QueueSlotTrigger
from airflow_jobforge.triggers.resume import not_before


class SlurmSubmitOperator(ClusterMixin, BaseOperator):
    """Submits a batch; pushes the SLURM job id (and how to resubmit it) to XCom.

    Adoption: the tag is unique per (DAG run, batch, try). A restart of the same try finds
    its job by tag. An automatic retry (an infrastructure error: the worker died right after
    sbatch, the API server was away) adopts the job an earlier try of its series submitted,
    whatever its state: the batch ran, and the wait task judges how. A user's clear starts a
    new series and submits anew, unless the previous try's job still runs (adopt it).

    Infrastructure retries (6, exponential backoff from 15 s to 3 min) apply unless the task
    or the DAG's `default_args` set `retries`/`retry_delay`.

    :param batch: the batch to run (`BatchSpec` as a dict: its name and jobs)
    :param slurm: the submission group's sbatch options (`SlurmParams` as a dict); the DAG
        run's params `partition`, `account`, `qos`, `walltime` override them
    :param output_dir: base output directory; each DAG run writes under `<output_dir>/<run id>`
    :param cluster: `ClusterSettings` as a dict (backend, connections, python on the nodes)
    :param container: the group's container (`ContainerParams` as a dict), if any
    :param workdir: working directory of the batch on the node (`sbatch --chdir`; absolute)
    :param max_concurrent_batches: the group's limit of batches of a run in the SLURM queue
        at once; at the limit the task defers until a slot is free (`slurm.limits`)
    :param queue_poll_interval: seconds between looks at the queue while at the limit
    :param array: submit the batch as one SLURM job array, a task per job, each in its own
        allocation (a group's one-job batches, merged); the local backend runs it as one batch
    :param array_throttle: at most this many of the array's tasks at once (`%K`)
    """

    ui_color = "#d6e4f0"

    def __init__(
        self,
        *,
        batch: dict[str, Any],
        slurm: dict[str, Any],
        output_dir: str,
        cluster: dict[str, Any],
        container: dict[str, Any] | None = None,
        workdir: str | None = None,
        max_concurrent_batches: int | None = None,
        queue_poll_interval: float = 5.0,
        array: bool = False,
        array_throttle: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**with_infra_retries(kwargs))
        self.array = array
        self.array_throttle = array_throttle
        self.max_concurrent_batches = max_concurrent_batches
        self.queue_poll_interval = queue_poll_interval
        self.batch = batch
        self.slurm = slurm
        self.output_dir = output_dir
        self.cluster = cluster
        self.container = container
        self.workdir = workdir
        self._client: BatchClient | None = None
        self._task_key: tuple[str, str, str] | None = None
        self._job: SubmittedJob | None = None

    def build_request(self, context: Any, client: BatchClient) -> SubmitRequest:
        params = context["params"]
        spec = BatchSpec.from_dict(self.batch)
        selection = self.selection(context, self.output_dir, client)
        names = selection([j.name for j in spec.jobs])
        if not names:
            raise AirflowSkipException(f"no job of batch {spec.batch} is selected in this run")
        # Blockers outside the selection count as done (a rerun: they succeeded before).
        spec = drop_unselected_blockers(restrict_batch(spec, names), selection)
        settings = self.settings
        slurm = SlurmParams.model_validate(self.slurm)
        defaults = {"partition": settings.partition, "account": settings.account}
        try:
            slurm = apply_overrides(
                slurm, {k: v for k, v in defaults.items() if getattr(slurm, k) is None}
            )
            slurm = apply_overrides(slurm, params)
        except JobForgeError as exc:  # a bad param stays bad: fail, do not retry
            raise AirflowFailException(str(exc)) from exc
        return SubmitRequest(
            tag=submit_tag(context_run_key(context), spec.batch, context["ti"].try_number),
            batch=spec,
            slurm=slurm,
            output_dir=run_output_dir(self.output_dir, context),
            container=ContainerParams.model_validate(self.container) if self.container else None,
            python=settings.python,
            pythonpath=settings.pythonpath,
            workdir=self.workdir,
            array=self.array and client.supports_arrays,
            array_throttle=self.array_throttle,
        )

    def execute(self, context: Any) -> SubmittedData:
        self._task_key = task_key(context)
        self._client = client = self.hook.get_client()
        request: SubmitRequest | None = None
        try:
            request = self.build_request(context, client)
            job = self._adopt(client, request, context)
            if job is None:
                job = self._submit_within_limits(client, request, context)
            self._job = job
            emit_events(
                client,
                request.output_dir,
                f"airflow-{request.batch.batch}",
                [
                    Event(
                        BATCH_ADOPTED if job.adopted else BATCH_SUBMITTED,
                        batch=request.batch.batch,
                        hpc_job_id=job.job_id,
                        message=f"{len(request.batch.jobs)} jobs, try {context['ti'].try_number}",
                        data={
                            "tag": request.tag,
                            "jobs": [j.name for j in request.batch.jobs],
                            "slurm": request.slurm.model_dump(exclude_none=True, mode="json"),
                        },
                    )
                ],
                self.log,
            )
        except SlurmError as exc:
            # An invalid partition stays invalid: fail, do not retry. (An error while the
            # request is built, e.g. reading records for `rerun_of`, is the cluster's.)
            if request is not None and is_rejection(exc):
                raise AirflowFailException(
                    f"SLURM rejected batch {request.batch.batch}: {exc}"
                ) from exc
            raise
        finally:
            client.close()
        verb = "adopted" if job.adopted else "submitted"
        self.log.info(
            "%s SLURM job %s for batch %s (%d jobs); stdout %s",
            verb,
            job.job_id,
            request.batch.batch,
            len(request.batch.jobs),
            job.stdout_path,
        )
        # The batch's jobs by name: their specs are in the DAG (every task that needs them has
        # them); 1,000-job specs through the API server per task cost more than the tasks.
        return job_info(job, slim_request(request_to_dict(request)))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """A queue slot came free: submit (re-checked under the limits lock)."""
        return self.execute(context)

    def _submit_within_limits(
        self, client: BatchClient, request: SubmitRequest, context: Any
    ) -> SubmittedJob:
        """sbatch through the cluster's submission gate; at the group's limit, defer."""
        settings = self.settings
        limit = self.max_concurrent_batches
        key, group = context_run_key(context), batch_group(request.batch.batch)

        def count() -> int:
            queued = client.queued(group_prefix(key, group))
            return count_group_jobs((job.job_name for job in queued), key, group)

        job = settings.gate().submit(
            lambda: client.submit(request, adopt=False),
            count=count if limit is not None else None,
            limit=limit,
        )
        if job is not None:
            return job
        assert limit is not None
        self.log.info(
            "group %s has %d batch(es) in the queue (max_concurrent_batches): %s waits",
            group,
            limit,
            request.batch.batch,
        )
        if request.batch.share:  # the running batches take its jobs while it waits
            prepared = sbatch_job(request)
            client.write_text(prepared.batch_file, prepared.batch_json)
        self.defer(
            trigger=QueueSlotTrigger(
                asdict(settings),
                key,
                group,
                request.batch.batch,
                limit,
                self.queue_poll_interval,
                not_before=not_before(),
            ),
            method_name="execute_complete",
        )
        raise AssertionError("unreachable: defer raises")

    def _adopt(
        self, client: BatchClient, request: SubmitRequest, context: Any
    ) -> SubmittedJob | None:
        tries = context_attempt(context, self.retries)
        key, batch = context_run_key(context), request.batch.batch
        candidates = [(request.tag, True)]
        candidates += [(submit_tag(key, batch, n), True) for n in tries.earlier_in_series()]
        if tries.try_number > 1 and not tries.is_retry:
            candidates.append((submit_tag(key, batch, tries.try_number - 1), False))
        for tag, adopt_finished in candidates:
            job_id = client.find(tag, deep=tries.try_number > 1)
            if job_id is None:
                continue
            job = SubmittedJob(
                job_id,
                f"{JOB_NAME_PREFIX}{tag}",
                f"{request.output_dir.rstrip('/')}/slurm",
                adopted=True,
                array=request.array,
            )
            if adopt_finished:
                return job
            status = client.status([job_id], {job_id: job.exit_file})[job_id]
            if status.outcome in (Outcome.RUNNING, Outcome.UNKNOWN):
                return job
        return None

    def on_kill(self) -> None:
        """A user killed the task right after sbatch: cancel that job (never on a worker's
        shutdown: the retry adopts the job)."""
        if self._job is not None and killed_by_user(self._task_key, self.log):
            client = self.hook.get_client()
            try:
                client.cancel([self._job.job_id])
            finally:
                client.close()
