"""SlurmJobSensor: waits for a batch's SLURM job; deferrable by default, poke mode too.

Deferrable, its first try starts in the triggerer (`start_from_trigger`): the scheduler hands
`SlurmJobTrigger` the submit task's id, the trigger reads the job from that XCom, and a
worker runs the wait only once the job ended (`execute_complete`). A later try (a clear, a
retry after NODE_FAIL) is left to a worker by its trigger: `execute` decides which job to
wait for and may resubmit. `dag.test()` runs `execute` always.

Owns the batch's SLURM-level failures: NODE_FAIL / BOOT_FAIL / PREEMPTED raise a retryable
error, and the next try resubmits the batch (new tag, at most `max_resubmits` times).
OUT_OF_MEMORY and TIMEOUT resubmit the batch's unfinished jobs at once with more memory or
walltime when the group asks for it (`retry`, up to `max_attempts`), else they fail without
retries, as cancellation does. Other retries are for infrastructure errors (the API server,
SSH or slurmctld away): they adopt the job. A batch whose jobs merely failed (runner exit 1)
is a success here: per-job outcomes are for the result tasks.

When it gives up on a batch, every job of it without a result record gets one (canceled if
the batch never started, else missing): nothing is lost. What happens goes to the run's
event log.
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.triggers.base import StartTriggerArgs

from airflow_jobforge.airflow_compat import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSkipException,
)
from airflow_jobforge.errors import JobForgeError, SlurmError
from airflow_jobforge.operators.base import (
    ClusterMixin,
    context_attempt,
    context_run_key,
    emit_events,
    job_info,
    killed_by_user,
    pull_own,
    task_key,
    with_infra_retries,
)
from airflow_jobforge.rundir import ResultRecord
from airflow_jobforge.rundir.batches import restrict_batch
from airflow_jobforge.rundir.completion import completion_file, record_lines, unrecorded
from airflow_jobforge.rundir.conclusion import XCOM_KEY, Conclusion
from airflow_jobforge.rundir.events import (
    BATCH_CONTINUED,
    BATCH_ENDED,
    BATCH_RESUBMITTED,
    RECORDS_COMPLETED,
    RETRY_MORE_RESOURCES,
    Event,
    ended_summary,
)
from airflow_jobforge.slurm.client import GRACE_S, StatusTracker, SubmittedJob
from airflow_jobforge.slurm.nodelist import NODE_FAILURE_STATES, excluding
from airflow_jobforge.slurm.protocol import BatchClient
from airflow_jobforge.slurm.request import (
    SubmittedData,
    job_names_of,
    request_from_dict,
    request_to_dict,
    restore_request,
    slim_job,
)
from airflow_jobforge.slurm.resources import RESOURCE_STATES, raised_limits
from airflow_jobforge.slurm.script import JOB_NAME_PREFIX, SubmitRequest
from airflow_jobforge.slurm.sharing import (
    claimed_and_running,
    secure_unrecorded,
    taken_by_others,
)
from airflow_jobforge.slurm.states import JobStatus, Outcome, normalize_state
from airflow_jobforge.slurm.tags import submit_tag
from airflow_jobforge.triggers.resume import not_before
from airflow_jobforge.triggers.slurm import SlurmJobTrigger

RUNNER_JOBS_FAILED = 1  # the node runner's exit code when the batch ran but jobs failed


def resource_tag(key: str, batch: str, try_number: int, attempt: int) -> str:
    """Tag of a retry with more resources: unique per (run, batch, wait try, attempt), so a
    restart of that try adopts it and a later clear never does."""
    return submit_tag(key, batch, try_number, "t") + f"m{attempt}"


def continuation_tag(key: str, batch: str, try_number: int, continuation: int) -> str:
    """Tag of a batch's continuation (what its runner left for its walltime): unique per
    (run, batch, wait try, continuation), so a restart of that try adopts it."""
    return submit_tag(key, batch, try_number, "t") + f"c{continuation}"


def _ran_to_an_end(status: JobStatus) -> bool:
    """Whether the batch's runner ended on its own (all jobs done, or some failed) or at
    its walltime: the states after which it may have left jobs for a continuation."""
    state = normalize_state(status.state)
    return (
        status.outcome is Outcome.SUCCEEDED
        or state == "TIMEOUT"
        or (status.outcome is Outcome.FAILED and status.exit_code == RUNNER_JOBS_FAILED)
    )


def _without_request(job: SubmittedData) -> dict[str, Any]:
    """The wait's XCom: the request (the batch's every job) is in the submit task's already."""
    return {k: v for k, v in job.items() if k != "request"}


def _others_may_hold_jobs(job: SubmittedData, conclusion: Conclusion) -> bool:
    """Whether the wait must look at a sharing batch's claims: some job has no record (in the
    records the trigger brought, or none were brought). A batch whose every job has its
    record, wherever it ran, costs no login (over SSH, one login per batch counts)."""
    batch = job["request"]["batch"]
    if not batch.get("share"):
        return False
    if not conclusion.event_written:
        return True
    return bool(_unrecorded_names(batch, conclusion.records))


def _ran_elsewhere(job: SubmittedData, records: dict[str, ResultRecord] | None) -> int:
    """How many jobs the batch has when every one of them ran in (and was recorded by)
    another batch of its group; 0 otherwise. A pending batch whose work was all taken is
    canceled as surplus by the runner that took the last of it (node.sharing)."""
    batch = job["request"]["batch"]
    if not batch.get("share") or not records:
        return 0
    names = job_names_of(batch)
    if all((r := records.get(n)) is not None and r.ran_in for n in names):
        return len(names)
    return 0


def _unrecorded_names(batch: dict[str, Any], records: dict[str, ResultRecord]) -> list[str]:
    return [name for name in job_names_of(batch) if name not in records]


class SlurmJobSensor(ClusterMixin, BaseSensorOperator):
    """Waits for a batch's SLURM job (see the module doc for what it does on failures).

    :param submit_task_id: the task that submitted the batch (its XCom says which job)
    :param cluster: ClusterSettings as a dict (backend, connections, python on the nodes)
    :param deferrable: wait in the triggerer (default) instead of a worker slot
    :param poll_interval: seconds between status queries (backing off to max_poll_interval)
    :param max_poll_interval: the longest wait between two status queries, in seconds
    :param grace_s: how long a job no SLURM source knows may stay unknown
    :param max_resubmits: resubmissions after NODE_FAIL / BOOT_FAIL / PREEMPTED
    :param retry: the group's retry-with-more-resources rule (`RetryParams` as a dict)
    :param batch: the batch's spec (`BatchSpec` as a dict), which the submit task's XCom
        names by its jobs only; None: that XCom holds it whole
    :param start_from_trigger: with `deferrable`, the scheduler starts the wait's first try
        right in the triggerer, which reads the job from the submit task's XCom: the wait
        runs on a worker only to conclude (or for a later try). False: its first try runs on
        a worker, which checks the batch once and defers
    """

    ui_color = "#e8f0d6"

    def __init__(
        self,
        *,
        submit_task_id: str,
        cluster: dict[str, Any],
        deferrable: bool = True,
        poll_interval: float = 2.0,
        max_poll_interval: float = 10.0,
        grace_s: float = GRACE_S,
        max_resubmits: int = 2,
        retry: dict[str, Any] | None = None,
        batch: dict[str, Any] | None = None,
        start_from_trigger: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        # Nothing reads a wait's return value (the submit's XCom names the job, the batch's
        # records are files): not pushing it saves an API call per batch.
        kwargs.setdefault("do_xcom_push", False)
        self.batch = batch
        super().__init__(**with_infra_retries(kwargs))
        self.max_resubmits = max_resubmits
        self.retry = retry
        self.submit_task_id = submit_task_id
        self.cluster = cluster
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.grace_s = grace_s
        self._job: SubmittedData | None = None
        self._tracker: StatusTracker | None = None
        self._records_client: BatchClient | None = None
        self._task_key: tuple[str, str, str] | None = None
        if deferrable and start_from_trigger:
            self.start_from_trigger = True
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls=f"{SlurmJobTrigger.__module__}.{SlurmJobTrigger.__qualname__}",
                trigger_kwargs={
                    "job_id": None,
                    "exit_file": None,
                    "cluster": cluster,
                    "poll_interval": poll_interval,
                    "max_poll_interval": max_poll_interval,
                    "grace_s": grace_s,
                    "submit_task_id": submit_task_id,
                },
                next_method="execute_complete",
            )

    # --- which job ---------------------------------------------------------------------------
    def _full_batch(
        self, context: Any, submitted: SubmittedData | None = None
    ) -> dict[str, Any] | None:
        """Where a slim request's jobs come back from: the batch spec the DAG gave this task,
        else (an older DAG) the submit task's XCom."""
        if self.batch is not None:
            return self.batch
        if submitted is None:
            submitted = pull_own(context, self.submit_task_id)
        return ((submitted or {}).get("request") or {}).get("batch")

    def _submitted(self, context: Any) -> SubmittedData | None:
        submitted = pull_own(context, self.submit_task_id)
        if not submitted or not submitted.get("request"):
            return submitted
        if "job_names" not in submitted["request"]["batch"]:
            return submitted
        try:
            request = restore_request(submitted["request"], self._full_batch(context, submitted))
        except JobForgeError as exc:  # a DAG without the spec stays so: fail, do not retry
            raise AirflowFailException(str(exc)) from exc
        return {**submitted, "request": request}

    def _current_job(self, context: Any) -> SubmittedData:
        """The job this try waits for: the submitted one, the latest resubmission of an
        earlier try (adopted whatever its state), or a new resubmission when that one ended
        NODE_FAIL / BOOT_FAIL / PREEMPTED — at most `max_resubmits` times."""
        submitted = self._submitted(context)
        if not submitted:
            raise AirflowSkipException("the batch was not submitted")
        try_number = context_attempt(context, self.retries).try_number
        if try_number == 1:
            return submitted
        client = self.hook.get_client()
        try:
            return self._job_of_later_try(client, context, submitted, try_number)
        finally:
            client.close()

    def _job_of_later_try(
        self, client: BatchClient, context: Any, submitted: SubmittedData, try_number: int
    ) -> SubmittedData:
        """A retry or a restart of the wait: its own resubmission when a restart of this try
        finds one (never a second one), else the newest job of earlier tries, adopted while it
        is ours and has not ended retryable, else resubmitted."""
        request = request_from_dict(submitted["request"])
        key, batch = context_run_key(context), request.batch.batch
        own = submit_tag(key, batch, try_number, "w")
        found = client.find(own)
        if found is not None:  # this try already resubmitted before a restart
            return self._info(found, own, submitted)
        previous, resubmits = self._latest(client, context, submitted, try_number)
        status = _status_query(client, previous)[previous["job_id"]]
        lost = _lost(client, previous, status)
        if status.outcome is not Outcome.RETRYABLE and not lost:
            return previous  # still running (adopt it) or a final outcome to report
        self._fail_if_no_resubmit_left(client, previous, status, resubmits, batch)
        return self._resubmit(client, previous, status, own, batch)

    def _fail_if_no_resubmit_left(
        self,
        client: BatchClient,
        previous: SubmittedData,
        status: JobStatus,
        resubmits: int,
        batch: str,
    ) -> None:
        """Fails the wait, without retries, once `max_resubmits` resubmissions were spent: a
        batch whose nodes keep failing is not resubmitted for ever. Its jobs without a result
        record get one first, so that the result tasks lose none."""
        if resubmits >= self.max_resubmits:
            if previous["request"]["batch"].get("share"):
                self._await_other_batches(client, previous, Conclusion())
            self._complete_records(client, previous, status)
            raise AirflowFailException(
                f"batch {batch} ended {status.state} after {resubmits} "
                "resubmission(s): not resubmitted again"
            )

    def _resubmit(
        self,
        client: BatchClient,
        previous: SubmittedData,
        status: JobStatus,
        own: str,
        batch: str,
    ) -> SubmittedData:
        """The previous job's request (its limits, raised or not) again under this try's own
        tag `w<try>`, which a restart of this try finds and adopts, away from the nodes that
        failed it. Submitted without looking for that tag first: `find` just said there is
        no such job."""
        request = replace(request_from_dict(previous["request"]), tag=own)
        request, excluded = self._without_failed_nodes(
            client, request, previous["job_id"], status.state
        )
        job = self.settings.gate().submit(lambda: client.submit(request, adopt=False))
        self.log.info(
            "resubmitted batch %s after %s as SLURM job %s%s",
            batch,
            status.state,
            job.job_id,
            _excluding_note(excluded),
        )
        info = {**job_info(job, request_to_dict(request)), "attempt": previous.get("attempt")}
        self._resubmitted_event(client, info, previous, status, excluded)
        return info

    def _resubmitted_event(
        self,
        client: BatchClient,
        info: SubmittedData,
        previous: SubmittedData,
        status: JobStatus,
        excluded: list[str],
    ) -> None:
        """The run's event log says which job replaced which, after what, and which nodes
        it avoids: the evidence when a batch ran more than once."""
        self._event(
            client,
            info,
            BATCH_RESUBMITTED,
            f"after {status.state} of SLURM job {previous['job_id']}" + _excluding_note(excluded),
            {
                "previous_job_id": previous["job_id"],
                "state": status.state,
                "excluded_nodes": excluded,
            },
        )

    def _without_failed_nodes(
        self, client: BatchClient, request: SubmitRequest, job_id: str, state: str
    ) -> tuple[SubmitRequest, list[str]]:
        """After NODE_FAIL / BOOT_FAIL, the request with `--exclude` naming the failed job's
        nodes (slurm/nodelist.py says why), and those nodes; unchanged after other states, or
        when SLURM cannot say which nodes they were: the resubmission matters more."""
        if normalize_state(state) not in NODE_FAILURE_STATES:
            return request, []
        try:
            failed = client.job_nodes(job_id, NODE_FAILURE_STATES)
            usable = client.partition_nodes(request.slurm.partition)
            slurm, excluded = excluding(request.slurm, failed, usable)
        except (SlurmError, ValueError) as exc:
            self.log.warning("nodes of SLURM job %s not excluded: %s", job_id, exc)
            return request, []
        return replace(request, slurm=slurm), excluded

    def _latest(
        self, client: BatchClient, context: Any, submitted: SubmittedData, try_number: int
    ) -> tuple[SubmittedData, int]:
        """The newest job of this batch that earlier tries started (their NODE_FAIL
        resubmissions `w<try>`, retries with more resources `t<try>m<n>` and continuations
        `t<try>c<n>`), and how many NODE_FAIL resubmissions there were. Within a try, its `w`
        comes before its `m`s, and those before its continuations (a continuation after a
        retry with more resources is adopted with the original limits)."""
        request = request_from_dict(submitted["request"])
        key, batch = context_run_key(context), request.batch.batch
        max_attempts = int((self.retry or {}).get("max_attempts") or 1)
        latest: SubmittedData | None = None
        resubmits = 0
        continuations = int(request.batch.max_continuations or 0)
        for earlier in range(try_number - 1, 0, -1):
            for n in range(continuations if latest is None else 0, 0, -1):
                tag = continuation_tag(key, batch, earlier, n)
                found = client.find(tag)
                if found is not None:
                    latest = {**self._info(found, tag, submitted), "continuation": n}
                    break
            if latest is None:
                for attempt in range(max_attempts, 1, -1):
                    tag = resource_tag(key, batch, earlier, attempt)
                    found = client.find(tag)
                    if found is not None:
                        latest = self._resource_info(found, tag, submitted, attempt)
                        break
            if earlier == 1:
                continue
            tag = submit_tag(key, batch, earlier, "w")
            found = client.find(tag)
            if found is not None:
                resubmits += 1
                latest = latest or self._info(found, tag, submitted)
        return latest or submitted, resubmits

    def _resource_info(
        self, job_id: str, tag: str, submitted: SubmittedData, attempt: int
    ) -> SubmittedData:
        """An adopted retry with more resources: its limits are the original ones raised
        `attempt - 1` times (the same rule computed them)."""
        request = request_from_dict(submitted["request"])
        slurm = request.slurm
        state = "OUT_OF_MEMORY" if (self.retry or {}).get("out_of_memory") else "TIMEOUT"
        for _ in range(attempt - 1):
            slurm = raised_limits(slurm, self.retry or {}, state) or slurm
        request = replace(request, tag=tag, slurm=slurm)
        job = SubmittedJob(
            job_id,
            f"{JOB_NAME_PREFIX}{tag}",
            submitted["slurm_dir"],
            adopted=True,
            array=request.array,
        )
        return {**job_info(job, request_to_dict(request)), "attempt": attempt}

    @staticmethod
    def _info(job_id: str, tag: str, submitted: SubmittedData) -> SubmittedData:
        array = bool((submitted.get("request") or {}).get("array"))
        job = SubmittedJob(
            job_id, f"{JOB_NAME_PREFIX}{tag}", submitted["slurm_dir"], adopted=True, array=array
        )
        return job_info(job, submitted["request"])

    # --- waiting -----------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        self._task_key = task_key(context)
        self._job = job = self._current_job(context)
        self.log.info("waiting for SLURM job %s (stdout %s)", job["job_id"], job["stdout"])
        if not self.deferrable:
            return super().execute(context)
        status = self._ended(job)
        if status is not None:
            nxt = self._follow_up(context, job, status)
            if nxt is None:
                return self._conclude(job, status, None, context)
            job = nxt
        self._defer(job)

    def _ended(self, job: SubmittedData) -> JobStatus | None:
        """The batch's final status when it ended before this try got a worker (its exit
        file is there to see: no SSH); else None. Such a wait concludes here instead of
        deferring and resuming at once: one worker execution less, and no trigger firing
        right after its deferral (triggers/resume.py says why that matters). Only deferrable
        tries that start on a worker get here: later tries and `dag.test()`'s."""
        exit_file = job.get("exit_file")
        if self.cluster.get("ssh_conn_id") or not exit_file or not os.path.exists(exit_file):
            return None
        try:
            status = self._query(job)[job["job_id"]]
        except SlurmError as exc:  # the trigger will ask again
            self.log.info("status of SLURM job %s unknown for now: %s", job["job_id"], exc)
            return None
        return status if status.terminal else None

    def _query(self, job: SubmittedData) -> dict[str, JobStatus]:
        """One status query for the job, through a client of its own."""
        client = self.hook.get_client()
        try:
            return _status_query(client, job)
        finally:
            client.close()

    def poke(self, context: Any) -> PokeReturnValue | bool:
        job = self._job
        assert job is not None
        self._tracker = self._tracker or StatusTracker(grace_s=self.grace_s)
        status = self._tracker.resolve(self._query(job))[job["job_id"]]
        if not status.terminal:
            return False
        nxt = self._follow_up(context, job, status)
        if nxt is not None:
            self._job, self._tracker = nxt, None
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._conclude(job, status, None, context))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "start" in event:  # started in the triggerer, which left this try to the worker
            self.log.info("the trigger left this try to the worker: %s", event["start"])
            return self.execute(context)
        job = event.pop("echo")
        if job.get("request"):
            job = {**job, "request": restore_request(job["request"], self._full_batch(context))}
        conclusion = Conclusion.from_dict(event.pop("conclusion", None))
        status = JobStatus(**{**event, "outcome": Outcome(event["outcome"])})
        records = conclusion.records if conclusion is not None else None
        nxt = self._follow_up(context, job, status, records)
        if nxt is not None:
            self._defer(nxt)
        return self._conclude(job, status, conclusion, context)

    def _defer(self, job: SubmittedData) -> None:
        self.defer(
            trigger=SlurmJobTrigger(
                job["job_id"],
                job["exit_file"],
                asdict(self.settings),  # resolved here: the triggerer reads no connections
                self.poll_interval,
                self.max_poll_interval,
                self.grace_s,
                echo=slim_job(job),
                not_before=not_before(),
            ),
            method_name="execute_complete",
        )

    def _follow_up(
        self,
        context: Any,
        job: SubmittedData,
        status: JobStatus,
        records: dict[str, ResultRecord] | None = None,
    ) -> SubmittedData | None:
        """The job that carries on the batch's work after `job` ended: a retry with more
        resources, or a continuation of the jobs its runner left for its walltime; None
        when the batch is done."""
        return self._retry_with_more(context, job, status, records) or self._continue(
            context, job, status, records
        )

    # --- continuation ------------------------------------------------------------------------
    def _continue(
        self,
        context: Any,
        job: SubmittedData,
        status: JobStatus,
        records: dict[str, ResultRecord] | None = None,
    ) -> SubmittedData | None:
        """After a batch whose runner left jobs unstarted because they would not end before
        its walltime (node.walltime): those jobs, less what other batches took, submitted as
        a new batch of the same group and limits — tagged `t<try>c<n>` so that a restart of
        this try adopts it — at most the batch's `max_continuations` times. None otherwise."""
        batch = job["request"]["batch"]
        if batch.get("walltime_margin_s") is None or not _ran_to_an_end(status):
            return None
        if records is not None and not _unrecorded_names(batch, records):
            return None  # the common case: every job has its record, nothing to read
        request = request_from_dict(job["request"])
        done = int(job.get("continuation") or 0)
        client = self.hook.get_client()
        try:
            if records is None:
                records = client.read_results(request.output_dir, request.batch.batch)
            away = taken_by_others(client, request)
            left = [
                j.name for j in request.batch.jobs if j.name not in records and j.name not in away
            ]
            if not left:
                return None
            if done >= request.batch.max_continuations:
                self.log.info(
                    "%d job(s) of batch %s never started before its walltime; no continuation "
                    "left (max_continuations %d)",
                    len(left),
                    request.batch.batch,
                    request.batch.max_continuations,
                )
                return None
            tries = context_attempt(context, self.retries)
            tag = continuation_tag(
                context_run_key(context), request.batch.batch, tries.try_number, done + 1
            )
            new = replace(request, tag=tag, batch=restrict_batch(request.batch, left))
            submitted = self.settings.gate().submit(lambda: client.submit(new, adopt=True))
            info = {
                **job_info(submitted, request_to_dict(new)),
                "attempt": job.get("attempt"),
                "continuation": done + 1,
            }
            self.log.info(
                "batch %s left %d job(s) for its walltime: continued as SLURM job %s "
                "(continuation %d of at most %d)",
                request.batch.batch,
                len(left),
                submitted.job_id,
                done + 1,
                request.batch.max_continuations,
            )
            self._event(
                client,
                info,
                BATCH_CONTINUED,
                f"{len(left)} job(s) left by SLURM job {job['job_id']} ({status.state}) "
                f"continued (continuation {done + 1})",
                {"previous_job_id": job["job_id"], "continuation": done + 1, "jobs": left[:1000]},
            )
            return info
        finally:
            client.close()

    # --- retry with more resources ---------------------------------------------------------
    def _retry_with_more(
        self,
        context: Any,
        job: SubmittedData,
        status: JobStatus,
        records: dict[str, ResultRecord] | None = None,
    ) -> SubmittedData | None:
        """After OUT_OF_MEMORY / TIMEOUT, when the group's `retry` covers it: the batch's jobs
        that did not succeed, submitted again with the raised limit; None otherwise."""
        state = normalize_state(status.state)
        if not self.retry or state not in RESOURCE_STATES:
            return None
        attempt = int(job.get("attempt") or 1)
        if attempt >= int(self.retry.get("max_attempts") or 1):
            self.log.info("batch ended %s; no retry left (max_attempts)", state)
            return None
        request = request_from_dict(job["request"])
        slurm = raised_limits(request.slurm, self.retry, state)
        if slurm is None:
            self.log.info("batch ended %s; its limit is already at the retry's cap", state)
            return None
        client = self.hook.get_client()
        try:
            if records is None:
                records = client.read_results(request.output_dir, request.batch.batch)
            away = taken_by_others(client, request)
            again = [
                j.name
                for j in request.batch.jobs
                if (j.name not in records or not records[j.name].succeeded) and j.name not in away
            ]
            if not again:
                return None
            tries = context_attempt(context, self.retries)
            tag = resource_tag(
                context_run_key(context), request.batch.batch, tries.try_number, attempt + 1
            )
            new = replace(request, tag=tag, slurm=slurm, batch=restrict_batch(request.batch, again))
            submitted = self.settings.gate().submit(lambda: client.submit(new, adopt=True))
            info = {**job_info(submitted, request_to_dict(new)), "attempt": attempt + 1}
            change = _limit_change(request, new)
            self.log.info(
                "batch ended %s: %d job(s) retried with %s as SLURM job %s (attempt %d)",
                state,
                len(again),
                change,
                submitted.job_id,
                attempt + 1,
            )
            self._event(
                client,
                info,
                RETRY_MORE_RESOURCES,
                f"after {state} of SLURM job {job['job_id']}: {change}, {len(again)} job(s)",
                {"state": state, "attempt": attempt + 1, "change": change, "jobs": again[:1000]},
            )
            return info
        finally:
            client.close()

    def _conclude(
        self,
        job: SubmittedData,
        status: JobStatus,
        conclusion: Conclusion | None,
        context: Any,
    ) -> dict[str, Any]:
        """The wait's verdict. With the trigger's `conclusion` (records, tails, event already
        written) it logs in nowhere unless records must be completed; the records go to XCom
        (`records`) for the result tasks, whatever the verdict."""
        client: BatchClient | None = None
        if conclusion is None:
            client = self.hook.get_client()
            paths = [job["stdout"], job["stderr"]]
            conclusion = Conclusion(tails={p: client.tail_logs(p, 20) for p in paths})
        try:
            for label, path in (("stdout", job["stdout"]), ("stderr", job["stderr"])):
                tail = conclusion.tails.get(path, "")
                if tail.strip():
                    self.log.info("SLURM job %s %s (last lines):\n%s", job["job_id"], label, tail)
            summary = ended_summary(job["job_id"], status.state, status.reason)
            if not conclusion.event_written:
                client = client or self.hook.get_client()
                self._event(
                    client,
                    job,
                    BATCH_ENDED,
                    summary,
                    {"state": normalize_state(status.state), "exit_code": status.exit_code},
                )
            ran = status.outcome is Outcome.FAILED and status.exit_code == RUNNER_JOBS_FAILED
            if ran:
                summary += (
                    ": the batch ran; some of its jobs did not succeed (see the result tasks)"
                )
            self.log.info(summary)
            retryable = status.outcome is Outcome.RETRYABLE
            if not retryable:
                if _others_may_hold_jobs(job, conclusion):  # else no login for their sake
                    client = client or self.hook.get_client()
                    self._await_other_batches(client, job, conclusion)
                records = self._complete_records(client, job, status, conclusion)
                self._push_records(context, records, conclusion)
                elsewhere = _ran_elsewhere(job, records)
                if elsewhere:
                    self.log.info(
                        "ran by other batches: all %d job(s) of batch %s ran in other batches "
                        "of the group (work sharing)%s",
                        elsewhere,
                        job["request"]["batch"]["batch"],
                        "; its pending SLURM job was canceled as surplus"
                        if status.outcome is Outcome.CANCELED
                        else "",
                    )
                    if status.outcome is Outcome.CANCELED:
                        return {**_without_request(job), "state": status.state}
            if status.outcome is Outcome.SUCCEEDED or ran:
                return {**_without_request(job), "state": status.state}
            if retryable:
                raise AirflowException(f"{summary}: the batch is resubmitted on retry")
            raise AirflowFailException(f"{summary}: not retried")
        finally:
            if client is not None:
                client.close()

    def _await_other_batches(
        self, client: BatchClient, job: SubmittedData, conclusion: Conclusion
    ) -> None:
        """A batch that shares work may end while other batches still run jobs they took
        from it: the wait looks again later instead of recording them missing. A claimer
        that has ended leaves them to the completion below (its runner recorded them). The
        chunks of its jobs without a record that nobody claimed are claimed first, for the
        batch: no other batch starts them once the completion records them."""
        request = request_from_dict(job["request"])
        try:
            if conclusion.event_written:
                records = dict(conclusion.records)
            else:
                records = client.read_results(request.output_dir, request.batch.batch)
            away = secure_unrecorded(client, request, records, job["job_id"])
            running = claimed_and_running(client, away, records)
        except (SlurmError, JobForgeError) as exc:  # the completion decides without them
            self.log.warning("jobs taken by other batches not checked: %s", exc)
            return
        if not running:
            return
        by = sorted({claim for claim in running.values()})
        self.log.info(
            "%d job(s) of batch %s run in other batches (%s): waiting for their records",
            len(running),
            request.batch.batch,
            ", ".join(by),
        )
        raise AirflowRescheduleException(
            datetime.now(timezone.utc) + timedelta(seconds=max(self.poll_interval, 2.0))
        )

    def _push_records(
        self,
        context: Any,
        records: dict[str, ResultRecord] | None,
        conclusion: Conclusion,
    ) -> None:
        """The result tasks read the batch's records here instead of logging in for them;
        tails of the jobs' outputs travel along."""
        if not conclusion.event_written or records is None or not context or "ti" not in context:
            return  # without SSH the result tasks read their batch's file, cheaper than XCom
        context["ti"].xcom_push(
            key=XCOM_KEY,
            value={
                "records": {n: dict(vars(r)) for n, r in records.items()},
                "tails": {p: t for p, t in conclusion.tails.items() if "/job-output/" in p},
            },
        )

    # --- records and events ----------------------------------------------------------------
    def _complete_records(
        self,
        client: BatchClient | None,
        job: SubmittedData,
        status: JobStatus,
        conclusion: Conclusion | None = None,
    ) -> dict[str, ResultRecord] | None:
        """A record for every job of the batch that has none: canceled when the batch never
        ran a job (canceled while pending, refused at launch) or its runner, ending on its
        own, left it for its walltime (its continuations spent), else missing. Returns the
        batch's records, completed (None when they could not be read). Logs in only when
        the trigger brought no records or some must be written."""
        own = client is None
        try:
            return self._completed(client, job, status, conclusion)
        finally:
            if own and self._records_client is not None:
                self._records_client.close()
            self._records_client = None

    def _completed(
        self,
        client: BatchClient | None,
        job: SubmittedData,
        status: JobStatus,
        conclusion: Conclusion | None,
    ) -> dict[str, ResultRecord] | None:
        request = request_from_dict(job["request"])
        self._records_client = None

        def connect() -> BatchClient:
            if client is not None:
                return client
            self._records_client = self._records_client or self.hook.get_client()
            return self._records_client

        try:
            if conclusion is not None and conclusion.event_written:
                records = dict(conclusion.records)
            else:
                records = connect().read_results(request.output_dir, request.batch.batch)
            names = [j.name for j in request.batch.jobs]
            ran = any(records.get(n) is not None and records[n].start for n in names)
            state = normalize_state(status.state)
            reason = f"no result record: batch ended {state}"
            left = (
                request.batch.walltime_margin_s is not None
                and _ran_to_an_end(status)
                and state != "TIMEOUT"
            )
            if left:  # a runner that ended on its own recorded all but what it left
                reason = (
                    "not started: would not end before the walltime, and the batch's "
                    f"{request.batch.max_continuations} continuation(s) are spent"
                )
            late = unrecorded(
                names,
                records,
                batch=request.batch.batch,
                status="missing" if (ran or state != "CANCELLED") and not left else "canceled",
                reason=reason,
                hpc_job_id=job["job_id"],
            )
            if not late:
                return records
            connect().append_text(
                completion_file(request.output_dir, request.batch.batch), record_lines(late)
            )
            records.update((r.name, r) for r in late)
        except Exception as exc:  # the wait's verdict stands; the result tasks say missing
            self.log.warning("records of batch %s not completed: %s", request.batch.batch, exc)
            return None
        self.log.info(
            "%d job(s) of batch %s had no result record: recorded %s",
            len(late),
            request.batch.batch,
            late[0].status,
        )
        self._event(
            connect(),
            job,
            RECORDS_COMPLETED,
            f"{len(late)} job(s) without a record recorded {late[0].status}",
            {"jobs": [r.name for r in late[:1000]], "status": late[0].status},
        )
        return records

    def _event(
        self,
        client: BatchClient,
        job: SubmittedData,
        type: str,
        message: str,
        data: dict[str, Any],
    ) -> None:
        request = job.get("request") or {}
        batch = (request.get("batch") or {}).get("batch")
        if not request.get("output_dir") or not batch:
            return
        emit_events(
            client,
            request["output_dir"],
            f"airflow-{batch}",
            [Event(type, batch=batch, hpc_job_id=job["job_id"], message=message, data=data)],
            self.log,
        )

    def on_kill(self) -> None:
        """Poke mode: a user killed the task while it waits (deferred waits cancel in the
        trigger); a worker's shutdown leaves the job to the next try."""
        if self._job is not None and killed_by_user(self._task_key, self.log):
            client = self.hook.get_client()
            try:
                client.cancel([self._job["job_id"]])
            finally:
                client.close()


def _limit_change(old: SubmitRequest, new: SubmitRequest) -> str:
    """'mem 1G -> 2G' / 'walltime 00:01:00 -> 00:02:00' for logs and events."""
    parts = [
        f"{field} {getattr(old.slurm, field)} -> {getattr(new.slurm, field)}"
        for field in ("mem", "walltime")
        if getattr(old.slurm, field) != getattr(new.slurm, field)
    ]
    return ", ".join(parts) or "the same limits"


def _status_query(client: BatchClient, job: SubmittedData) -> dict[str, JobStatus]:
    """One status query for the job; its exit file lets a job that ended answer without
    asking SLURM."""
    return client.status([job["job_id"]], {job["job_id"]: job["exit_file"]})


def _lost(client: BatchClient, previous: SubmittedData, status: JobStatus) -> bool:
    """Whether the previous job is gone, though its status may say it runs: the controller
    lost it, or handed its id to another job. Its exit file is the job's own: not lost."""
    # A job accounting knows but the controller lost: the previous try waited out the
    # grace for it (that is why this try runs), so it is gone; resubmit.
    if status.outcome is Outcome.UNKNOWN and status.source == "sacct":
        return True
    if status.source == "exit_file":
        return False
    return _id_reused(client, previous, status)


def _id_reused(client: BatchClient, previous: SubmittedData, status: JobStatus) -> bool:
    """Whether the previous job's id now names another job (a lost job's id handed out
    again), asked of the source that answered for the id."""
    # A controller that lost its state hands the lost ids out again: the id
    # must still carry our job's name (its tag), else ours is gone. Where the
    # controller knows the id, only its queue says whose it is now: accounting
    # still holds our lost job under that id (seen in CI: another batch's
    # resubmission got the id, and this wait adopted it).
    tag = previous["job_name"].removeprefix(JOB_NAME_PREFIX)
    deep = status.source != "squeue"
    return client.find(tag, deep=deep) != previous["job_id"]


def _excluding_note(excluded: list[str]) -> str:
    """', excluding node(s) n1,n2' after a resubmission's log line and event message;
    nothing when no node was excluded."""
    return f", excluding node(s) {','.join(excluded)}" if excluded else ""
