"""What `jobforge run` ends with: the results table, the summary, and where to look next."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airflow_jobforge.embedded.logs import TaskFailure
from airflow_jobforge.rundir import (
    NOT_WRITABLE,
    ResultRecord,
    Summary,
    results_table,
    tail_file,
)

TAIL_LINES = 3
# Tasks whose failure only repeats a job's failure, which the table already shows.
_RESULT_TASKS = ("job_", "results_", "post_", "summary")


@dataclass(frozen=True)
class RunResult:
    """One `jobforge run`: the DAG run's state and what its jobs left."""

    dag_run_id: str
    state: str
    seconds: float
    run_dir: Path
    selected: list[str]
    records: dict[str, ResultRecord]
    summary: Summary
    local_output: bool
    log_dir: Path | None = None  # the task logs, when they did not go to the console
    failed_tasks: list[TaskFailure] = field(default_factory=list)
    output_problem: str | None = None  # the run dir cannot be written now (full disk...)
    pipeline: bool = False  # a pipeline's run: jobs are `<stage>/<job>`, run dirs per stage


def format_report(result: RunResult) -> str:
    lines = [
        results_table(
            result.selected,
            result.records,
            # The summary line below carries the details (error, path): one copy, not N.
            no_record_reason=NOT_WRITABLE if result.summary.no_record_reason else None,
            stderr_tail=_stderr_tail(result.run_dir) if result.local_output else None,
        ),
        "",
        str(result.summary),
        f"Results: {result.run_dir}/<stage>/results/*.jsonl; job output: "
        f"{result.run_dir}/<stage>/job-output/ (`jobforge results show {result.run_dir}`)"
        if result.pipeline
        else f"Results: {result.run_dir}/results/*.jsonl; job output: {result.run_dir}/job-output/",
    ]
    if result.output_problem and not result.summary.no_record_reason:
        lines.append(
            f"The output dir is not writable now ({result.output_problem}): jobs that wrote "
            "there may have failed for that, and their stderr may be lost."
        )
    last = {f.task_id: f for f in result.failed_tasks}  # a retried task's last attempt
    for failure in last.values():
        if failure.state == "failed" and not reports_jobs(failure.task_id):
            lines.append(describe_failure(failure, with_log=result.log_dir is not None))
    run = f"Airflow DAG run {result.dag_run_id} {result.state} in {result.seconds:.1f}s"
    if result.log_dir is not None:
        run += f"; task logs: {result.log_dir}/"
    lines.append(run)
    return "\n".join(lines)


def _stderr_tail(run_dir: Path) -> Callable[[str], str]:
    def tail(name: str) -> str:
        stage, _, job = name.rpartition("/")  # a pipeline's `<stage>/<job>`
        return tail_file(run_dir / stage / "job-output" / f"{job}.err", TAIL_LINES)

    return tail


def reports_jobs(task_id: str) -> bool:
    """Result tasks fail when their jobs failed: the table says that better than they do."""
    return task_id.rsplit(".", 1)[-1].startswith(_RESULT_TASKS)


def describe_failure(failure: TaskFailure, with_log: bool = True) -> str:
    retry = ", will retry" if failure.state == "up_for_retry" else ""
    where = f" (log: {failure.log})" if with_log else ""
    return (
        f"task {failure.task_id} failed (attempt {failure.attempt}{retry}): {failure.error}{where}"
    )
