"""The end of `jobforge run`: table, summary, paths, and the failures a table cannot show."""

from __future__ import annotations

from pathlib import Path

from airflow_jobforge.embedded.logs import TaskFailure
from airflow_jobforge.embedded.report import RunResult, format_report
from airflow_jobforge.rundir import summarize


def failure(task_id: str, state: str = "failed", attempt: int = 1) -> TaskFailure:
    return TaskFailure(task_id, state, attempt, "sbatch: invalid partition", Path(f"/l/{task_id}"))


def test_report_names_failed_batch_tasks_with_their_log_but_not_result_tasks(tmp_path):
    result = RunResult(
        dag_run_id="manual__1",
        state="failed",
        seconds=2.04,
        run_dir=tmp_path,
        selected=["a"],
        records={},
        summary=summarize([], ["a"]),
        local_output=True,
        log_dir=Path("/logs/run"),
        failed_tasks=[
            failure("g.submit_0000", "up_for_retry", 1),
            failure("g.submit_0000", "failed", 2),
            failure("g.job_a"),
            failure("summary"),
        ],
    )
    lines = format_report(result).splitlines()
    assert lines[1].split() == ["a", "missing", "no", "result", "record"]
    assert lines[3] == "1 jobs: 0 successful, 0 failed, 0 canceled, 1 missing"
    assert lines[5:] == [
        "task g.submit_0000 failed (attempt 2): sbatch: invalid partition (log: /l/g.submit_0000)",
        "Airflow DAG run manual__1 failed in 2.0s; task logs: /logs/run/",
    ]


def test_a_full_output_dir_is_said_once_in_the_summary_or_once_on_its_own(tmp_path):
    from airflow_jobforge.rundir import ResultRecord

    problem = f"No space left on device: {tmp_path}"
    base = dict(dag_run_id="r", state="failed", seconds=1.0, run_dir=tmp_path, local_output=True)
    no_records = RunResult(
        **base,
        selected=["a", "b"],
        records={},
        summary=summarize([], ["a", "b"], f"output dir not writable ({problem})"),
        output_problem=problem,
    )
    text = format_report(no_records)
    rows = text.splitlines()[1:3]
    assert [row.split(None, 2)[2] for row in rows] == ["unknown: output dir not writable"] * 2
    assert text.count(problem) == 1
    assert "(2 without a record: output dir not writable (No space left on device" in text

    failed = ResultRecord("a", "finished", 1, 0.1, 1.0, 1.1, "b")
    with_records = RunResult(
        **base,
        selected=["a"],
        records={"a": failed},
        summary=summarize([failed], ["a"], None),
        output_problem=problem,
    )
    assert f"The output dir is not writable now ({problem})" in format_report(with_records)
