"""SlurmJobSensor: waits for a batch's SLURM job; deferrable by default, poke mode too.

Owns the batch's SLURM-level failures: NODE_FAIL / BOOT_FAIL / PREEMPTED raise a retryable
error, and the next try resubmits the batch (new tag, at most `max_resubmits` times);
TIMEOUT, OUT_OF_MEMORY and cancellation fail without retries. Other retries are for
infrastructure errors (the API server, SSH or slurmctld away): they adopt the job. A batch
whose jobs merely failed (runner exit 1) is a success here: per-job outcomes are for the
result tasks.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from airflow_jobforge.execution import request_from_dict, submit_tag
from airflow_jobforge.operators.base import (
    ClusterMixin,
    context_attempt,
    context_run_key,
    job_info,
    killed_by_user,
    task_key,
    with_infra_retries,
)
from airflow_jobforge.slurm.client import GRACE_S, StatusTracker, SubmittedJob
from airflow_jobforge.slurm.states import JobStatus, Outcome
from airflow_jobforge.triggers.slurm import SlurmJobTrigger

RUNNER_JOBS_FAILED = 1  # the node runner's exit code when the batch ran but jobs failed


class SlurmJobSensor(ClusterMixin, BaseSensorOperator):
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
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**with_infra_retries(kwargs))
        self.max_resubmits = max_resubmits
        self.submit_task_id = submit_task_id
        self.cluster = cluster
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.grace_s = grace_s
        self._job: dict[str, Any] | None = None
        self._tracker: StatusTracker | None = None
        self._task_key: tuple[str, str, str] | None = None

    # --- which job ---------------------------------------------------------------------------
    def _current_job(self, context: Any) -> dict[str, Any]:
        """The job this try waits for: the submitted one, the latest resubmission of an
        earlier try (adopted whatever its state), or a new resubmission when that one ended
        NODE_FAIL / BOOT_FAIL / PREEMPTED — at most `max_resubmits` times."""
        submitted = context["ti"].xcom_pull(task_ids=self.submit_task_id)
        if not submitted:
            raise AirflowSkipException("the batch was not submitted")
        try_number = context_attempt(context, self.retries).try_number
        if try_number == 1:
            return submitted
        client = self.hook.get_client()
        try:
            request = request_from_dict(submitted["request"])
            key, batch = context_run_key(context), request.batch.batch
            own = submit_tag(key, batch, try_number, "w")
            found = client.find(own)
            if found is not None:  # this try already resubmitted before a restart
                return self._info(found, own, submitted)
            resubmits = []
            for earlier in range(try_number - 1, 1, -1):
                tag = submit_tag(key, batch, earlier, "w")
                found = client.find(tag)
                if found is not None:
                    resubmits.append(self._info(found, tag, submitted))
            previous = resubmits[0] if resubmits else submitted
            status = client.status(
                [previous["job_id"]], {previous["job_id"]: previous["exit_file"]}
            )[previous["job_id"]]
            # A job accounting knows but the controller lost: the previous try waited out the
            # grace for it (that is why this try runs), so it is gone; resubmit.
            lost = status.outcome is Outcome.UNKNOWN and status.source == "sacct"
            if not lost and status.source != "exit_file":
                # A controller that lost its state hands the lost ids out again: the id
                # must still carry our job's name (its tag), else ours is gone.
                lost = client.find(previous["job_name"].removeprefix("jf-")) != previous["job_id"]
            if status.outcome is not Outcome.RETRYABLE and not lost:
                return previous  # still running (adopt it) or a final outcome to report
            if len(resubmits) >= self.max_resubmits:
                raise AirflowFailException(
                    f"batch {batch} ended {status.state} after {len(resubmits)} "
                    "resubmission(s): not resubmitted again"
                )
            request = replace(request, tag=own)
            job = client.submit(request, adopt=False)
            self.log.info(
                "resubmitted batch %s after %s as SLURM job %s", batch, status.state, job.job_id
            )
            return job_info(job, submitted["request"])
        finally:
            client.close()

    @staticmethod
    def _info(job_id: str, tag: str, submitted: dict[str, Any]) -> dict[str, Any]:
        job = SubmittedJob(job_id, f"jf-{tag}", submitted["slurm_dir"], adopted=True)
        return job_info(job, submitted["request"])

    # --- waiting -----------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        self._task_key = task_key(context)
        self._job = job = self._current_job(context)
        self.log.info("waiting for SLURM job %s (stdout %s)", job["job_id"], job["stdout"])
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=SlurmJobTrigger(
                job["job_id"],
                job["exit_file"],
                asdict(self.settings),  # resolved here: the triggerer reads no connections
                self.poll_interval,
                self.max_poll_interval,
                self.grace_s,
                echo=job,
            ),
            method_name="execute_complete",
        )

    def poke(self, context: Any) -> PokeReturnValue | bool:
        job = self._job
        assert job is not None
        self._tracker = self._tracker or StatusTracker(grace_s=self.grace_s)
        client = self.hook.get_client()
        try:
            status = self._tracker.resolve(
                client.status([job["job_id"]], {job["job_id"]: job["exit_file"]})
            )[job["job_id"]]
        finally:
            client.close()
        if not status.terminal:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._conclude(job, status))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        job = event.pop("echo")
        status = JobStatus(**{**event, "outcome": Outcome(event["outcome"])})
        return self._conclude(job, status)

    def _conclude(self, job: dict[str, Any], status: JobStatus) -> dict[str, Any]:
        client = self.hook.get_client()
        try:
            for label, path in (("stdout", job["stdout"]), ("stderr", job["stderr"])):
                tail = client.tail_logs(path, 20)
                if tail.strip():
                    self.log.info("SLURM job %s %s (last lines):\n%s", job["job_id"], label, tail)
        finally:
            client.close()
        summary = f"SLURM job {job['job_id']} ended {status.state}" + (
            f" ({status.reason})" if status.reason else ""
        )
        ran = status.outcome is Outcome.FAILED and status.exit_code == RUNNER_JOBS_FAILED
        if ran:
            summary += ": the batch ran; some of its jobs did not succeed (see the result tasks)"
        self.log.info(summary)
        if status.outcome is Outcome.SUCCEEDED or ran:
            return {**job, "state": status.state}
        if status.outcome is Outcome.RETRYABLE:
            raise AirflowException(f"{summary}: the batch is resubmitted on retry")
        raise AirflowFailException(f"{summary}: not retried")

    def on_kill(self) -> None:
        """Poke mode: a user killed the task while it waits (deferred waits cancel in the
        trigger); a worker's shutdown leaves the job to the next try."""
        if self._job is not None and killed_by_user(self._task_key, self.log):
            client = self.hook.get_client()
            try:
                client.cancel([self._job["job_id"]])
            finally:
                client.close()
