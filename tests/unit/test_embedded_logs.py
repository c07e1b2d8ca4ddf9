"""`jobforge run` without --verbose: Airflow's output goes to log files, never the console."""

from __future__ import annotations

import logging
import sys
import warnings
from types import SimpleNamespace

from airflow_jobforge.embedded.logs import (
    RUN_LOG,
    LogRouter,
    route_output,
    task_log_path,
    task_logs,
)


def test_prints_logging_and_warnings_of_the_run_go_to_the_run_log_not_the_console(tmp_path, capsys):
    logger = logging.getLogger("jobforge.test.console")
    handler = logging.StreamHandler(sys.stdout)  # as Airflow's handler holds the console
    logger.addHandler(handler)
    try:
        with route_output(enabled=True) as (console, router):
            print("before the run log is known")
            router.open_run_log(tmp_path / RUN_LOG)
            logger.warning("a traceback, say")
            # What Python's default warnings.showwarning does (pytest replaces it here).
            sys.stderr.write(warnings.formatwarning("deprecated", DeprecationWarning, "m.py", 1))
            print("jobforge's own line", file=console.out)
        assert handler.stream is sys.stdout  # given back
    finally:
        logger.removeHandler(handler)
    captured = capsys.readouterr()
    assert captured.out == "jobforge's own line\n" and captured.err == ""
    log = (tmp_path / RUN_LOG).read_text()
    assert log.startswith("before the run log is known\n")
    assert "a traceback, say" in log and "m.py:1: DeprecationWarning: deprecated" in log


def test_verbose_leaves_the_console_alone(capsys):
    with route_output(enabled=False) as (console, router):
        print("to the console")
    assert router is None and console.out is sys.stdout
    assert capsys.readouterr().out == "to the console\n"


def test_task_log_paths_follow_airflows_template(tmp_path):
    assert task_log_path(tmp_path, "g.job_1", -1, 2) == tmp_path / "task_id=g.job_1/attempt=2.log"
    assert task_log_path(tmp_path, "t", 3, 1) == tmp_path / "task_id=t/map_index=3/attempt=1.log"


def test_each_task_logs_to_its_own_file_and_its_failure_is_kept(tmp_path, monkeypatch):
    from airflow.sdk.definitions import dag as dag_module

    def fake_run_task(*, ti, task, run_triggerer=False):
        print(f"running {ti.task_id}")
        ti.state = "failed" if ti.task_id == "bad" else "success"
        return SimpleNamespace(error=ValueError("boom\nsecond line"))

    monkeypatch.setattr(dag_module, "_run_task", fake_run_task)
    router = LogRouter()
    router.open_run_log(tmp_path / RUN_LOG)
    seen = []
    monkeypatch.setattr(sys, "stdout", router)
    with task_logs(router, tmp_path, seen.append) as failures:
        for task_id in ("good", "bad"):
            ti = SimpleNamespace(task_id=task_id, map_index=-1, try_number=1, state=None)
            dag_module._run_task(ti=ti, task=None, run_triggerer=True)
        print("between tasks")
    assert dag_module._run_task is fake_run_task
    router.flush()
    assert (tmp_path / "task_id=good/attempt=1.log").read_text() == "running good\n"
    assert (tmp_path / "task_id=bad/attempt=1.log").read_text() == "running bad\n"
    assert "between tasks" in (tmp_path / RUN_LOG).read_text()
    assert [(f.task_id, f.state, f.error) for f in failures] == [("bad", "failed", "boom")]
    assert seen == failures


def test_a_handler_made_during_one_run_logs_into_the_next_runs_log_or_verbose_console(
    tmp_path, capsys
):
    """Airflow configures its handlers once, during the first run of a process (tests, a
    caller running several configs): later runs still get their output."""
    logger = logging.getLogger("jobforge.test.runs")
    logger.propagate = False
    try:
        with route_output(enabled=True) as (_, router):
            router.open_run_log(tmp_path / "one.log")
            logger.addHandler(logging.StreamHandler(sys.stdout))  # holds the router
            logger.warning("first")
        with route_output(enabled=True) as (_, router):
            router.open_run_log(tmp_path / "two.log")
            logger.warning("second")
        with route_output(enabled=False):
            logger.warning("verbose")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    assert (tmp_path / "one.log").read_text() == "first\n"
    assert (tmp_path / "two.log").read_text() == "second\n"
    assert capsys.readouterr().out == "verbose\n"
