"""Result tasks: what each job did, in the task log and XCom; re-runs on clear/retry.

`JobResultOperator` reports one job, `BatchResultOperator` all jobs of a batch (one Airflow
task instead of hundreds, for large configs). They read the records the batch left. A job's
own failure fails the task for good (AirflowFailException); their retries are for
infrastructure errors only and just read again. When the user clears such a task, its jobs
that did not succeed are submitted again, alone, as one SLURM job, and the task waits for it
(deferred), then reports their new records; a retry of that cleared try adopts that rerun.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any

from airflow.sdk import BaseOperator

from airflow_jobforge.airflow_compat import AirflowFailException, AirflowSkipException
from airflow_jobforge.operators.base import (
    ClusterMixin,
    context_attempt,
    context_run_key,
    pull_own,
    run_output_dir,
    with_infra_retries,
)
from airflow_jobforge.results.report import write_report
from airflow_jobforge.results.stats import format_stats, gather_stats, run_job_ids, write_efficiency
from airflow_jobforge.rundir import ResultRecord, job_state, summarize
from airflow_jobforge.rundir.batches import restrict_batch
from airflow_jobforge.rundir.conclusion import (
    MAX_FAILED_TAILS,
    TAIL_LINES,
    XCOM_KEY,
    job_output_path,
    records_from_xcom,
)
from airflow_jobforge.rundir.manifest import RunManifest, manifest_path
from airflow_jobforge.rundir.records import collect_results
from airflow_jobforge.slurm.protocol import BatchClient
from airflow_jobforge.slurm.request import request_from_dict, restore_request
from airflow_jobforge.slurm.tags import rerun_names
from airflow_jobforge.triggers.resume import not_before
from airflow_jobforge.triggers.slurm import SlurmJobTrigger

NOT_SUCCESSFUL = ("failed", "missing")  # canceled jobs are skipped tasks, not red ones
MAX_TAILS = MAX_FAILED_TAILS


def describe(name: str, record: ResultRecord | None) -> str:
    if record is None:
        return f"{name}: missing (no result record: walltime, node failure or batch killed?)"
    if record.status == "finished":
        return f"{name}: finished, return code {record.return_code}, {record.exec_time_s:.2f}s"
    return f"{name}: {record.status}" + (f" ({record.reason})" if record.reason else "")


class _ResultBase(ClusterMixin, BaseOperator):
    ui_color = "#f0e6d6"

    def __init__(
        self,
        *,
        jobs: list[str],
        batch: str,
        output_dir: str,
        cluster: dict[str, Any],
        submit_task_id: str,
        poll_interval: float = 2.0,
        wait_task_id: str | None = None,
        batch_spec: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**with_infra_retries(kwargs))
        self.wait_task_id = wait_task_id
        self.batch_spec = batch_spec
        self._whole_run = False  # a cleared try's records are in the rerun's files too
        self.jobs = jobs
        self.batch = batch
        self.output_dir = output_dir
        self.cluster = cluster
        self.submit_task_id = submit_task_id
        self.poll_interval = poll_interval

    def _selected(self, context: Any) -> list[str]:
        names = self.selection(context, self.output_dir)(self.jobs)
        if not names:
            raise AirflowSkipException("not selected in this run")
        return names

    def execute(self, context: Any) -> Any:
        names = self._selected(context)
        tries = context_attempt(context, self.retries)
        self._whole_run = tries.cleared
        if tries.cleared:
            records = self._records(context)
            again = [n for n in names if n not in records or not records[n].succeeded]
            if again:
                self._rerun(context, again, tries.first)  # defers; resumes in execute_complete
            return self._report(context, names, None)
        return self._report(context, names, self._pushed(context))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        self.log.info("rerun SLURM job %s ended %s", event["job_id"], event.get("state"))
        self._whole_run = True
        return self._report(context, self._selected(context), None)

    def _pushed(self, context: Any) -> Pushed | None:
        """The records and output tails the batch's wait task pushed (no login needed), if
        it pushed them: a wait that gathered nothing or an older DAG's wait did not. Waits
        push them over SSH only (files here are cheaper than XCom): without SSH, no asking."""
        if not self.wait_task_id or not self.cluster.get("ssh_conn_id"):
            return None
        data = pull_own(context, self.wait_task_id, XCOM_KEY)
        if not data:
            return None
        return Pushed(records_from_xcom(data.get("records")) or {}, dict(data.get("tails") or {}))

    def _records(self, context: Any) -> dict[str, ResultRecord]:
        client = self.hook.get_client()
        try:
            return client.read_results(run_output_dir(self.output_dir, context))
        finally:
            client.close()

    def _rerun(self, context: Any, names: list[str], cleared_try: int) -> None:
        """Submit `names` alone, tagged per (task, cleared try): adopted if already there."""
        submitted = pull_own(context, self.submit_task_id)
        if not submitted:
            raise AirflowFailException(f"batch {self.batch} was never submitted: nothing to rerun")
        full_batch = self.batch_spec or submitted["request"]["batch"]
        request = request_from_dict(restore_request(submitted["request"], full_batch))
        batch_name, tag_part = rerun_names(self.batch, self.task_id, cleared_try)
        tag = f"{context_run_key(context)}.{tag_part}"
        request = replace(request, tag=tag, batch=restrict_batch(request.batch, names, batch_name))
        client = self.hook.get_client()
        try:
            job = client.submit(request, adopt=True)
        finally:
            client.close()
        self.log.info(
            "re-running %d job(s) alone as SLURM job %s%s: %s",
            len(names),
            job.job_id,
            " (adopted)" if job.adopted else "",
            ", ".join(names[:20]),
        )
        self.defer(
            trigger=SlurmJobTrigger(
                job.job_id,
                job.exit_file,
                asdict(self.settings),
                self.poll_interval,
                not_before=not_before(),
            ),
            method_name="execute_complete",
        )

    def _report(self, context: Any, names: list[str], pushed: Pushed | None) -> Any:
        raise NotImplementedError

    def _source(self, context: Any, pushed: Pushed | None) -> Pushed:
        """Records and a tail reader: what the wait pushed (over SSH), else read through a
        client: the batch's own files, or the whole run's after a clear (a rerun's records
        are in files of their own)."""
        if pushed is not None:
            return pushed
        client = self.hook.get_client()
        try:
            batch = None if self._whole_run else self.batch
            records = client.read_results(run_output_dir(self.output_dir, context), batch)
        except BaseException:
            client.close()
            raise
        return Pushed(records, {}, client)


@dataclass
class Pushed:
    """A batch's records and job-output tails; `client` reads tails that are not here."""

    records: dict[str, ResultRecord]
    tails: dict[str, str]
    client: BatchClient | None = None

    def tail(self, run_dir: str, name: str, suffix: str) -> str:
        path = job_output_path(run_dir, name, suffix)
        if path in self.tails or self.client is None:
            return self.tails.get(path, "")
        return self.client.tail_logs(path, TAIL_LINES)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class JobResultOperator(_ResultBase):
    """One job: success, failure with its stderr tail, canceled (skipped), or missing.

    :param job: the job's name
    :param kwargs: `batch`, `output_dir`, `cluster`, `submit_task_id` and `poll_interval`
        as for `BatchResultOperator`, and `BaseOperator`'s arguments
    """

    def __init__(self, *, job: str, **kwargs: Any) -> None:
        super().__init__(jobs=[job], **kwargs)
        self.job = job

    def _report(self, context: Any, names: list[str], pushed: Pushed | None) -> Any:
        source = self._source(context, pushed)
        try:
            record = source.records.get(self.job)
            self.log.info(describe(self.job, record))
            if record is not None and record.hpc_job_id:
                self.log.info("SLURM job id: %s", record.hpc_job_id)
            if record is not None and record.status == "finished":
                run_dir = run_output_dir(self.output_dir, context)
                for suffix in ("out", "err"):
                    tail = source.tail(run_dir, self.job, suffix)
                    if tail.strip():
                        self.log.info("%s.%s (last lines):\n%s", self.job, suffix, tail)
        finally:
            source.close()
        if record is None or record.status == "missing":
            raise AirflowFailException(describe(self.job, record) + "; clear to re-run it")
        if record.status == "canceled":
            raise AirflowSkipException(f"canceled: {record.reason}")
        if record.return_code != 0:
            raise AirflowFailException(
                f"job {self.job} failed with return code {record.return_code}; "
                "clear this task to re-run it alone"
            )
        return record.__dict__


class BatchResultOperator(_ResultBase):
    """All jobs of a batch in one task: a table in the log; in XCom the counts
    (`return_value`) and the records of its jobs that did not succeed (`results`, absent
    when all did). Every record is in the run directory: a 1,000-job batch's records are
    ~270 KB of JSON, which cost the api-server ~140 ms a push and the metadata database
    27 MB per 100,000-job run when they all went to XCom.

    :param jobs: the batch's job names
    :param batch: the batch's name
    :param output_dir: base output directory; the run's records are under `<run id>/`
    :param cluster: `ClusterSettings` as a dict (where the records are read, reruns submitted)
    :param submit_task_id: the batch's submit task (its XCom is the request a rerun repeats)
    :param poll_interval: seconds between status queries while a cleared task's rerun runs
    :param wait_task_id: the batch's wait task: over SSH its XCom `records` holds the batch's
        records and output tails, read without a login
    :param batch_spec: the batch's spec (`BatchSpec` as a dict) for a rerun; None: the submit
        task's XCom holds it whole
    """

    def _report(self, context: Any, names: list[str], pushed: Pushed | None) -> Any:
        source = self._source(context, pushed)
        try:
            records = source.records
            bad = []
            lines = []
            for name in names:
                record = records.get(name)
                lines.append(describe(name, record))
                if job_state(record) in NOT_SUCCESSFUL:
                    bad.append(name)
            self.log.info("batch %s, %d jobs:\n%s", self.batch, len(names), "\n".join(lines))
            run_dir = run_output_dir(self.output_dir, context)
            for name in bad[:MAX_TAILS]:
                tail = source.tail(run_dir, name, "err")
                if tail.strip():
                    self.log.info("%s.err (last lines):\n%s", name, tail)
        finally:
            source.close()
        unsuccessful = {
            n: records[n].__dict__ for n in names if n in records and not records[n].succeeded
        }
        if unsuccessful:
            context["ti"].xcom_push(key="results", value=unsuccessful)
        if bad:
            raise AirflowFailException(
                f"{len(bad)} of {len(names)} jobs did not succeed: {', '.join(bad[:20])}; "
                "clear this task to re-run them alone"
            )
        return {
            "jobs": len(names),
            "succeeded": sum(n in records and records[n].succeeded for n in names),
        }


RED = ("failed", "upstream_failed")


class RunSummaryOperator(_ResultBase):
    """The last task of a run: JADE's summary of every selected job. Fails if any job failed
    or is missing, or if any other task of the run ended red (a result that could not be
    read, a wait that gave up), so a green run means every job succeeded and no task is red,
    even when the red task is no leaf.

    It leaves the run's manifest (`run.json`: every selected job and its batch, the config
    file) for the after-the-run commands, and pushes the run dir to XCom (`run_dir`) for the
    UI's results page.

    :param batches: every batch's job names, in batch order
    :param config_file: the config file the DAG was built from, if any
    """

    def __init__(
        self,
        *,
        batches: dict[str, list[str]],
        config_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("jobs", [name for names in batches.values() for name in names])
        super().__init__(**kwargs)
        self.batches = batches
        self.config_file = config_file

    def execute(self, context: Any) -> Any:
        if self.stage and not self._stage_started(context):
            # It runs whatever happened (ALL_DONE); a stage that never started has no jobs
            # to count (none of them is missing) and no manifest to leave.
            raise AirflowSkipException(f"stage {self.stage} did not start")
        return self._report(context, self._selected(context), None)

    def _stage_started(self, context: Any) -> bool:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        run_id, gate = context["run_id"], f"{self.stage}.start"
        states = RuntimeTaskInstance.get_task_states(
            dag_id=context["dag"].dag_id, task_ids=[gate], run_ids=[run_id]
        ).get(run_id, {})
        return str(states.get(gate)) == "success"

    def _red_tasks(self, context: Any) -> list[str]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        run_id = context["run_id"]
        states = RuntimeTaskInstance.get_task_states(
            dag_id=context["dag"].dag_id, run_ids=[run_id]
        ).get(run_id, {})
        # A pipeline stage answers for its own tasks only: the stage before it is done.
        scope = f"{self.stage}." if self.stage else ""
        return sorted(
            t
            for t, state in states.items()
            if state in RED and t != self.task_id and t.startswith(scope)
        )

    def _write_report(self, run_dir: str, client: BatchClient) -> dict[str, ResultRecord] | None:
        """Counts and efficiency (sacct) in the log, `report.html` with the plots in the run
        dir. Where the run dir is on the cluster only (SSH without a shared file system) the
        report is left to `jobforge stats RUN_DIR --html` there. Never fails the summary.
        Returns the run's records when it read them (the summary needs them too: read once,
        a 100,000-job run's cost ~1 s at the run's very end)."""
        if not os.path.isdir(run_dir):
            self.log.info(
                "no report: %s is not on this machine; run `jobforge stats %s --html "
                "report.html` where it is",
                run_dir,
                run_dir,
            )
            return None
        records = None
        try:
            records = collect_results(run_dir)
            ids = run_job_ids(run_dir, records)
            usage = client.usage(ids) if ids else {}
            stats = gather_stats(run_dir, usage, records)
            if usage:
                write_efficiency(run_dir, stats.usage)
            path = write_report(run_dir, stats)
        except Exception as exc:
            self.log.warning("report of %s not written: %s", run_dir, exc)
            return records
        self.log.info("run statistics:\n%s", format_stats(stats))
        self.log.info("report with plots: %s", path)
        return records

    def _manifest(self, context: Any, names: list[str]) -> RunManifest:
        chosen = set(names)
        return RunManifest(
            jobs={n: b for b, jobs in self.batches.items() for n in jobs if n in chosen},
            config_file=self.config_file,
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            run_key=context_run_key(context),
            extra={"params": {k: v for k, v in context["params"].items() if v}},
        )

    def _report(self, context: Any, names: list[str], pushed: Pushed | None) -> Any:
        """One client (one login over SSH) for the manifest, the usage and the records."""
        run_dir = run_output_dir(self.output_dir, context)
        context["ti"].xcom_push(key="run_dir", value=run_dir)
        client = self.hook.get_client()
        try:
            try:
                client.write_text(
                    str(manifest_path(run_dir)), self._manifest(context, names).to_json()
                )
            except Exception as exc:  # the summary itself still stands
                self.log.warning("run manifest not written to %s: %s", run_dir, exc)
            records = self._write_report(run_dir, client)
            if records is None:
                records = client.read_results(run_dir)
        finally:
            client.close()
        summary = summarize((records[n] for n in names if n in records), names)
        self.log.info("%s (output: %s)", summary, run_dir)
        bad = [n for n in names if job_state(records.get(n)) in NOT_SUCCESSFUL]
        red = self._red_tasks(context)
        if bad or red:
            problems = [f"not successful: {', '.join(bad[:20])}"] if bad else []
            if red:
                problems.append(f"failed tasks: {', '.join(red[:20])}")
            raise AirflowFailException(f"{summary}; {'; '.join(problems)}")
        return asdict(summary)
