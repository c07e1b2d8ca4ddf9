"""Summaries and the results table `jobforge run` ends with."""

from __future__ import annotations

from airflow_jobforge.rundir import (
    ResultRecord,
    results_table,
    summarize,
    tail_file,
    unwritable_reason,
)


def rec(name: str, rc: int | None = 0, status: str = "finished", reason: str | None = None):
    start = None if status == "canceled" else 10.0
    return ResultRecord(name, status, rc, 1.5 if start else 0.0, start, 11.5, "b", None, reason)


def test_summary_of_a_run_without_unknowns_reads_as_before():
    summary = summarize([rec("a"), rec("b", 3)], ["a", "b"])
    assert str(summary) == "2 jobs: 1 successful, 1 failed, 0 canceled, 0 missing"


def test_jobs_without_a_record_are_missing_with_the_reason_given():
    summary = summarize([rec("a")], ["a", "b", "c"], "output dir not writable (No space left)")
    assert summary.missing == 2 and summary.no_record == ("b", "c")
    assert str(summary) == (
        "3 jobs: 1 successful, 0 failed, 0 canceled, 2 missing "
        "(2 without a record: output dir not writable (No space left))"
    )
    assert summarize([rec("a")], ["a"], "ignored").no_record_reason is None


def test_table_lists_every_job_with_state_code_time_and_failed_stderr():
    records = {
        "ok": rec("ok"),
        "bad": rec("bad", 3),
        "skip": rec("skip", None, "canceled", "blocking job 'bad' did not succeed"),
    }
    table = results_table(
        ["ok", "bad", "skip", "gone"],
        records,
        no_record_reason="output dir not writable",
        stderr_tail=lambda name: "to stderr\n",
    )
    assert table.splitlines() == [
        "job   status      rc      time  reason",
        "ok    ok           0     1.50s",
        "bad   failed       3     1.50s",
        "      | to stderr",
        "skip  canceled                  blocking job 'bad' did not succeed",
        "gone  missing                   unknown: output dir not writable",
    ]


def test_a_large_run_lists_only_what_did_not_succeed_and_counts_the_rest():
    names = [f"j{i}" for i in range(100)]
    records = {n: rec(n, 1 if n in ("j7", "j50") else 0) for n in names[:-1]}
    table = results_table(names, records, max_rows=10).splitlines()
    assert [line.split()[0] for line in table[1:4]] == ["j7", "j50", "j99"]
    assert table[-1] == "(97 successful jobs not listed)"
    many = results_table(names, {}, max_rows=10).splitlines()
    assert len(many) == 1 + 10 + 1 and many[-1] == "... and 90 more jobs that did not succeed"


def test_tail_file_reads_the_last_lines_and_tolerates_absence(tmp_path):
    path = tmp_path / "x.err"
    path.write_text("".join(f"{i}\n" for i in range(1000)))
    assert tail_file(path, 2) == "998\n999\n"
    assert tail_file(tmp_path / "absent") == ""


def test_a_writable_or_absent_dir_is_no_problem_a_file_is(tmp_path):
    assert unwritable_reason(tmp_path) is None
    assert unwritable_reason(tmp_path / "absent") is None
    (tmp_path / "f").write_text("")
    assert unwritable_reason(tmp_path / "f") == f"Not a directory: {tmp_path / 'f'}"
    assert list(tmp_path.iterdir()) == [tmp_path / "f"]


def test_a_batch_result_pushes_only_the_records_of_jobs_that_did_not_succeed():
    """Every record is in the run directory; in XCom a 1,000-job batch's would be ~270 KB."""
    from types import SimpleNamespace

    import pytest

    from airflow_jobforge.airflow_compat import AirflowFailException
    from airflow_jobforge.operators.results import BatchResultOperator, Pushed

    def record(name, status, code):
        return ResultRecord(name, status, code, 0.1, 1.0, 1.1, "g-0000")

    task = BatchResultOperator(
        task_id="results_0000",
        jobs=["a", "b", "c"],
        batch="g-0000",
        output_dir="/o",
        cluster={"backend": "local"},
        submit_task_id="submit_0000",
    )
    pushed: dict = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.__setitem__(key, value))
    context = {"ti": ti, "run_id": "r1"}
    ok = {n: record(n, "finished", 0) for n in "abc"}
    assert task._report(context, ["a", "b", "c"], Pushed(ok, {})) == {"jobs": 3, "succeeded": 3}
    assert pushed == {}
    records = {"a": ok["a"], "b": record("b", "finished", 1), "c": record("c", "canceled", None)}
    with pytest.raises(AirflowFailException, match="1 of 3 jobs"):
        task._report(context, ["a", "b", "c"], Pushed(records, {}))
    assert set(pushed["results"]) == {"b", "c"}
    assert pushed["results"]["b"]["return_code"] == 1


def test_a_batch_result_asks_for_the_waits_records_only_over_ssh():
    """The wait pushes its batch's records over SSH only; elsewhere asking would be one
    wasted API call per batch."""
    from types import SimpleNamespace

    from airflow_jobforge.operators.results import BatchResultOperator

    pulls: list = []
    ti = SimpleNamespace(xcom_pull=lambda **kw: pulls.append(kw) or {"records": {}, "tails": {}})

    def task(cluster):
        return BatchResultOperator(
            task_id="results_0000",
            jobs=["a"],
            batch="g-0000",
            output_dir="/o",
            cluster=cluster,
            submit_task_id="submit_0000",
            wait_task_id="wait_0000",
        )

    assert task({"backend": "slurm"})._pushed({"ti": ti}) is None
    assert pulls == []
    assert task({"backend": "slurm", "ssh_conn_id": "login"})._pushed({"ti": ti}) is not None
    assert pulls == [{"task_ids": "wait_0000", "key": "records"}]
