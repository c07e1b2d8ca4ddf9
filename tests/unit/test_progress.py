"""The progress line: repainted on a terminal, one plain line per change elsewhere."""

from __future__ import annotations

import io
import time

from airflow_jobforge.embedded.progress import ProgressPrinter, progress_line, watching
from airflow_jobforge.rundir import ResultRecord, ResultsWriter, results_file


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_gets_a_newline_ended_line_only_when_it_changes():
    out = io.StringIO()
    printer = ProgressPrinter(out)
    for line in ["jobs: 0/2", "jobs: 0/2", "jobs: 0/2", "jobs: 1/2", "jobs: 1/2", "jobs: 2/2"]:
        printer.show(line)
    printer.close()
    assert out.getvalue() == "jobs: 0/2\njobs: 1/2\njobs: 2/2\n"
    assert "\r" not in out.getvalue()


def test_a_terminal_gets_one_line_repainted_in_place_and_ended_once():
    out = Terminal()
    printer = ProgressPrinter(out)
    for line in ["jobs: 0/10 done, 10 running", "jobs: 0/10 done, 10 running", "jobs: 9/9"]:
        printer.show(line)
    printer.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.split("\r")[1:] == ["jobs: 0/10 done, 10 running", "jobs: 9/9" + " " * 18 + "\n"]


def test_a_note_gets_its_own_line_and_the_progress_line_comes_back_below_it():
    out = Terminal()
    printer = ProgressPrinter(out)
    printer.show("jobs: 1/3")
    printer.note("task submit_0001 failed (attempt 1, will retry): boom")
    assert out.getvalue() == (
        "\rjobs: 1/3\r         \rtask submit_0001 failed (attempt 1, will retry): boom\n\rjobs: 1/3"
    )
    plain = io.StringIO()
    ProgressPrinter(plain).note("a note")
    assert plain.getvalue() == "a note\n"


def test_the_watcher_shows_the_line_while_the_body_runs_and_its_final_state(tmp_path):
    out = io.StringIO()
    run_dir = tmp_path / "run"
    with watching(lambda: progress_line(run_dir, 2), ProgressPrinter(out), interval=0.05):
        deadline = time.monotonic() + 30
        while not out.getvalue():  # the watcher's thread showed the line while the body runs
            assert time.monotonic() < deadline, "no progress line while the body ran"
            time.sleep(0.01)
        writer = ResultsWriter(results_file(run_dir, "b"))
        writer.append(ResultRecord("a", "finished", 0, 0.1, 1.0, 1.1, "b"))
        writer.append(ResultRecord("b", "finished", 4, 0.1, 1.0, 1.1, "b"))
        writer.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "jobs: 0/2 done (0 ok, 0 failed, 0 canceled/missing), 0 running"
    assert lines[-1] == "jobs: 2/2 done (1 ok, 1 failed, 0 canceled/missing), 0 running"
    assert len(lines) == len(set(lines))


def test_once_the_run_ended_jobs_without_a_record_are_not_counted_as_running(tmp_path):
    (tmp_path / "job-output").mkdir()
    for name in ("a", "b"):
        (tmp_path / "job-output" / f"{name}.out").write_text("")
    writer = ResultsWriter(results_file(tmp_path, "b"))
    writer.append(ResultRecord("a", "finished", 0, 0.1, 1.0, 1.1, "b"))
    writer.close()
    assert progress_line(tmp_path, 3).endswith("(1 ok, 0 failed, 0 canceled/missing), 1 running")
    assert progress_line(tmp_path, 3, ended=True) == (
        "jobs: 1/3 done (1 ok, 0 failed, 0 canceled/missing), 2 without a record"
    )
