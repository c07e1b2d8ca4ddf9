from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from airflow_jobforge.node import runner as runner_module
from airflow_jobforge.node.runner import run_batch
from airflow_jobforge.rundir import (
    ResultRecord,
    ResultsWriter,
    collect_results,
    read_records,
    results_file,
)
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.rundir.events import read_events


def records(out: Path, batch: str = "b") -> list[ResultRecord]:
    return list(read_records(results_file(out, batch)))


def by_name(out: Path) -> dict[str, ResultRecord]:
    return {r.name: r for r in records(out)}


def test_runs_every_job_with_bash_and_writes_stdout_stderr_and_env(tmp_path):
    spec = BatchSpec(
        batch="b",
        jobs=(
            JobSpec(
                "hello",
                'echo "$JOBFORGE_JOB_NAME $JOBFORGE_BATCH $JOBFORGE_OUTPUT_DIR"; echo oops >&2',
            ),
            JobSpec("fails", "exit 7"),
        ),
    )
    assert run_batch(spec, tmp_path, num_processes=2) == 1
    got = by_name(tmp_path)
    assert got["hello"].status == "finished" and got["hello"].return_code == 0
    assert got["fails"].return_code == 7 and not got["fails"].succeeded
    out = (tmp_path / "job-output" / "hello.out").read_text()
    assert out == f"hello b {tmp_path.resolve()}\n"
    assert (tmp_path / "job-output" / "hello.err").read_text() == "oops\n"
    assert got["hello"].batch == "b" and got["hello"].end >= got["hello"].start


def test_all_successful_batch_exits_zero_and_records_slurm_job_id(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    spec = BatchSpec(batch="b", jobs=(JobSpec("a", "true"),))
    assert run_batch(spec, tmp_path, 1) == 0
    assert by_name(tmp_path)["a"].hpc_job_id == "4242"


def test_never_more_than_num_processes_jobs_at_once(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    cmd = (
        f'mkdir {work}/run.$JOBFORGE_JOB_NAME; ls {work} | grep -c "^run\\." > '
        f"{work}/count.$JOBFORGE_JOB_NAME; sleep 0.15; rmdir {work}/run.$JOBFORGE_JOB_NAME"
    )
    spec = BatchSpec(batch="b", jobs=tuple(JobSpec(f"j{i}", cmd) for i in range(8)))
    run_batch(spec, tmp_path / "out", num_processes=2)
    counts = [int(p.read_text()) for p in work.glob("count.*")]
    assert len(counts) == 8 and max(counts) == 2


def test_num_processes_defaults_to_slurm_cpus_on_node(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "3")
    assert runner_module.default_num_processes() == 3
    monkeypatch.delenv("SLURM_CPUS_ON_NODE")
    assert runner_module.default_num_processes() == len(os.sched_getaffinity(0))


def test_blocked_job_starts_only_after_its_blocker_ended(tmp_path):
    order = tmp_path / "order"
    spec = BatchSpec(
        batch="b",
        jobs=(
            JobSpec("second", f"echo second >> {order}", blocked_by=("first",)),
            JobSpec("first", f"sleep 0.2; echo first >> {order}"),
        ),
    )
    run_batch(spec, tmp_path / "out", num_processes=4)
    assert order.read_text() == "first\nsecond\n"


def test_failed_blocker_cancels_dependants_with_the_flag_and_cascades(tmp_path):
    spec = BatchSpec(
        batch="b",
        jobs=(
            JobSpec("a", "exit 1"),
            JobSpec("cancel_me", "true", blocked_by=("a",), cancel_on_blocking_job_failure=True),
            JobSpec(
                "and_me", "true", blocked_by=("cancel_me",), cancel_on_blocking_job_failure=True
            ),
            JobSpec("runs_anyway", "true", blocked_by=("a",)),
        ),
    )
    run_batch(spec, tmp_path, num_processes=2)
    got = by_name(tmp_path)
    assert got["cancel_me"].status == "canceled" and "'a'" in got["cancel_me"].reason
    assert got["and_me"].status == "canceled"
    assert got["runs_anyway"].status == "finished" and got["runs_anyway"].return_code == 0
    assert not (tmp_path / "job-output" / "cancel_me.out").exists()


def test_failed_blocker_in_an_earlier_batch_cancels_a_flagged_job(tmp_path):
    writer = ResultsWriter(results_file(tmp_path, "earlier"))
    writer.append(ResultRecord("x", "finished", 2, 0.1, 1.0, 1.1, "earlier"))
    writer.append(ResultRecord("y", "finished", 0, 0.1, 1.0, 1.1, "earlier"))
    writer.close()
    spec = BatchSpec(
        batch="b",
        jobs=(
            JobSpec(
                "flagged", "true", external_blockers=("x",), cancel_on_blocking_job_failure=True
            ),
            JobSpec("unflagged", "true", external_blockers=("x",)),
            JobSpec("fine", "true", external_blockers=("y",), cancel_on_blocking_job_failure=True),
        ),
    )
    run_batch(spec, tmp_path, 2)
    got = by_name(tmp_path)
    assert got["flagged"].status == "canceled"
    assert got["unflagged"].succeeded and got["fine"].succeeded


def test_a_job_released_by_a_canceled_blocker_runs_once_and_a_canceled_one_is_recorded_once(
    tmp_path,
):
    """`a` is canceled at the start (its blocker in an earlier batch failed). Releasing it
    queued `b` (not flagged), and the start's own pass queued `b` again: it ran twice. `c`
    (flagged, with the failed external blocker too) was canceled by `a`'s release and again
    by that pass. Exactly one record per job."""
    writer = ResultsWriter(results_file(tmp_path, "earlier"))
    writer.append(ResultRecord("x", "finished", 2, 0.1, 1.0, 1.1, "earlier"))
    writer.close()
    count = tmp_path / "count"
    spec = BatchSpec(
        batch="b",
        jobs=(
            JobSpec("a", "true", external_blockers=("x",), cancel_on_blocking_job_failure=True),
            JobSpec("b", f"echo b >> {count}", blocked_by=("a",)),
            JobSpec(
                "c",
                "true",
                blocked_by=("a",),
                external_blockers=("x",),
                cancel_on_blocking_job_failure=True,
            ),
        ),
    )
    run_batch(spec, tmp_path, 1)
    names = [r.name for r in records(tmp_path)]
    assert sorted(names) == ["a", "b", "c"]
    assert count.read_text() == "b\n"
    got = by_name(tmp_path)
    assert got["a"].status == "canceled" and got["c"].status == "canceled"
    assert got["b"].succeeded


def test_node_setup_runs_first_and_teardown_runs_last(tmp_path):
    log = tmp_path / "log"
    spec = BatchSpec(
        batch="b",
        jobs=(JobSpec("a", f"echo job >> {log}"),),
        node_setup_command=f"echo setup >> {log}",
        node_teardown_command=f"echo teardown >> {log}",
    )
    assert run_batch(spec, tmp_path / "out", 1) == 0
    assert log.read_text() == "setup\njob\nteardown\n"


def test_failed_node_setup_cancels_every_job_and_teardown_still_runs(tmp_path):
    log = tmp_path / "log"
    spec = BatchSpec(
        batch="b",
        jobs=(JobSpec("a", "true"), JobSpec("b2", "true")),
        node_setup_command="exit 4",
        node_teardown_command=f"echo teardown > {log}",
    )
    assert run_batch(spec, tmp_path / "out", 1) == 1
    got = by_name(tmp_path / "out")
    assert {r.status for r in got.values()} == {"canceled"}
    assert "exit code 4" in got["a"].reason
    assert log.read_text() == "teardown\n"


def _wait_for(paths: list[Path], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() and p.stat().st_size for p in paths):
        assert time.monotonic() < deadline, "jobs did not start"
        time.sleep(0.02)


def test_sigterm_mid_batch_leaves_exactly_one_record_per_job_and_no_orphans(tmp_path):
    pids = [tmp_path / f"pid{i}" for i in range(2)]
    jobs = [JobSpec("quick1", "true"), JobSpec("quick2", "true")]
    jobs += [JobSpec(f"long{i}", f"echo $$ > {pids[i]}; exec sleep 60") for i in range(2)]
    jobs += [JobSpec(f"never{i}", "true") for i in range(3)]
    batch_file = tmp_path / "batch.json"
    BatchSpec(batch="b", jobs=tuple(jobs), num_processes=2).dump(batch_file)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_jobforge.node",
            "run-batch",
            str(batch_file),
            "--output",
            str(out),
        ]
    )
    _wait_for(pids)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    recs = records(out)
    assert sorted(r.name for r in recs) == sorted(j.name for j in jobs), "one record per job"
    got = {r.name: r for r in recs}
    assert got["quick1"].succeeded and got["quick2"].succeeded
    assert got["long0"].status == got["long1"].status == "missing"
    assert "SIGTERM" in got["long0"].reason
    assert {got[f"never{i}"].status for i in range(3)} == {"canceled"}
    for pid_file in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid_file.read_text()), 0)


def test_a_job_scancel_signals_before_the_runner_is_missing_not_finished(tmp_path):
    """scancel signals every process of the step: the job's shell may die (and be reaped)
    before the runner gets its own SIGTERM. That job was ended by the batch's termination."""
    pid_file = tmp_path / "pid"
    jobs = (JobSpec("long", f"echo $$ > {pid_file}; sleep 60"), JobSpec("after", "true"))
    batch_file = tmp_path / "batch.json"
    BatchSpec(batch="b", jobs=jobs, num_processes=1).dump(batch_file)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "airflow_jobforge.node", "run-batch", str(batch_file)]
    proc = subprocess.Popen([*argv, "--output", str(out)])
    _wait_for([pid_file])
    os.kill(int(pid_file.read_text()), signal.SIGTERM)  # the job's shell first
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # then the runner, as slurmstepd goes down its list
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    got = {r.name: r for r in records(out)}
    assert got["long"].status == "missing" and "SIGTERM" in got["long"].reason
    assert got["after"].status == "canceled"


def test_job_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_module, "KILL_GRACE_S", 0.5)
    pid_file = tmp_path / "pid"
    spec = BatchSpec(
        batch="b",
        jobs=(
            JobSpec(
                "stubborn", f"trap '' TERM; echo $$ > {pid_file}; while true; do sleep 0.05; done"
            ),
        ),
    )
    threading.Thread(
        target=lambda: (_wait_for([pid_file]), os.kill(os.getpid(), signal.SIGINT)), daemon=True
    ).start()
    started = time.monotonic()
    assert run_batch(spec, tmp_path / "out", 1) == 128 + signal.SIGINT
    assert time.monotonic() - started < 10
    assert by_name(tmp_path / "out")["stubborn"].status == "missing"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_a_torn_last_line_never_hides_earlier_records(tmp_path):
    path = results_file(tmp_path, "b")
    writer = ResultsWriter(path)
    writer.append(ResultRecord("a", "finished", 0, 0.1, 1.0, 1.1, "b"))
    writer.close()
    with open(path, "a") as handle:
        handle.write('{"name": "b", "status": "fini')
    assert [r.name for r in read_records(path)] == ["a"]
    assert list(collect_results(tmp_path)) == ["a"]


def test_lines_that_are_no_record_are_skipped_and_every_record_read(tmp_path):
    good = [ResultRecord(n, "finished", 0, 0.1, 1.0, 1.1, "b").to_json() for n in "abc"]
    two_on_one_line = good[0] + "," + good[1]
    for lines in ([good[0], "3", good[2]], [good[0], two_on_one_line, good[2]], good):
        path = tmp_path / "b.jsonl"
        path.write_text("".join(line + "\n" for line in lines))
        expected = ["a", "b", "c"] if lines is good else ["a", "c"]
        assert [r.name for r in read_records(path)] == expected


def test_the_newest_record_of_a_rerun_job_wins(tmp_path):
    for batch, rc, end in (("b1", 1, 1.0), ("b2", 0, 2.0)):
        writer = ResultsWriter(results_file(tmp_path, batch))
        writer.append(ResultRecord("a", "finished", rc, 0.1, end - 0.1, end, batch))
        writer.close()
    assert collect_results(tmp_path)["a"].return_code == 0


def test_unreadable_batch_file_is_exit_2(tmp_path, capsys):
    from airflow_jobforge.node.__main__ import main

    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"nope": 1}))
    assert main(["run-batch", str(bad), "--output", str(tmp_path)]) == 2
    assert "cannot read batch file" in capsys.readouterr().err


def test_a_short_write_gets_its_own_line_so_the_next_record_survives(tmp_path, monkeypatch):
    path = results_file(tmp_path, "b")
    writer = ResultsWriter(path)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:10]))
    with pytest.raises(OSError, match="No space left on device"):
        writer.append(ResultRecord("torn", "finished", 0, 0.1, 1.0, 1.1, "b"))
    monkeypatch.setattr(os, "write", real_write)
    writer.append(ResultRecord("next", "finished", 0, 0.1, 1.0, 1.1, "b"))
    writer.close()
    assert [r.name for r in read_records(path)] == ["next"]


def test_records_that_cannot_be_written_are_held_retried_and_reported(
    tmp_path, monkeypatch, capsys
):
    """A full disk refuses the first two records: the jobs keep running, the held records
    are written with the third, stderr says so once with the path and the error."""
    real_append = ResultsWriter.append
    refusals = iter([True, True])

    def append(self: ResultsWriter, record: ResultRecord) -> None:
        if next(refusals, False):
            raise OSError(28, "No space left on device", str(self.path))
        real_append(self, record)

    monkeypatch.setattr(ResultsWriter, "append", append)
    spec = BatchSpec(
        batch="b",
        jobs=(
            JobSpec("a", "true"),
            JobSpec("b", "true", blocked_by=("a",)),
            JobSpec("c", "true", blocked_by=("b",)),
        ),
    )
    assert run_batch(spec, tmp_path, 1) == 0
    assert [r.name for r in records(tmp_path)] == ["a", "b", "c"]
    err = capsys.readouterr().err
    path = results_file(tmp_path.resolve(), "b")
    assert err.count(f"cannot write result records to {path}: No space left on device") == 1


def test_records_never_written_end_the_batch_with_exit_74_and_go_to_stderr(
    tmp_path, monkeypatch, capsys
):
    def refuse(self: ResultsWriter, record: ResultRecord) -> None:
        raise OSError(28, "No space left on device", str(self.path))

    monkeypatch.setattr(ResultsWriter, "append", refuse)
    spec = BatchSpec(batch="b", jobs=(JobSpec("a", "true"), JobSpec("b", "exit 3")))
    assert run_batch(spec, tmp_path, 2) == runner_module.EXIT_OUTPUT_UNWRITABLE == 74
    err = capsys.readouterr().err
    assert "output dir not writable: 2 result records of batch b could not be written" in err
    lost = [
        json.loads(line.split("unwritten record: ", 1)[1])
        for line in err.splitlines()
        if "unwritten record: " in line
    ]
    assert {r["name"]: r["return_code"] for r in lost} == {"a": 0, "b": 3}


def test_a_job_whose_output_file_cannot_be_created_is_recorded_missing(tmp_path, monkeypatch):
    real_spawn = runner_module.BatchRunner._spawn

    def spawn(self, name, argv):
        if name == "a":
            raise OSError(28, "No space left on device", f"{self.output_dir}/job-output/a.out")
        return real_spawn(self, name, argv)

    monkeypatch.setattr(runner_module.BatchRunner, "_spawn", spawn)
    spec = BatchSpec(
        batch="b",
        jobs=(
            JobSpec("a", "true"),
            JobSpec("after", "true", blocked_by=("a",), cancel_on_blocking_job_failure=True),
            JobSpec("other", "true"),
        ),
    )
    assert run_batch(spec, tmp_path, 1) == 1
    got = by_name(tmp_path)
    assert got["a"].status == "missing"
    assert got["a"].reason == (
        f"not started: No space left on device: {tmp_path.resolve()}/job-output/a.out"
    )
    assert got["after"].status == "canceled" and got["other"].succeeded


def test_batch_start_and_failed_jobs_are_node_events_successful_ones_are_not(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    spec = BatchSpec(
        batch="b",
        jobs=(
            JobSpec("ok", "true"),
            JobSpec("bad", "exit 3"),
            JobSpec("after", "true", blocked_by=("bad",), cancel_on_blocking_job_failure=True),
        ),
        monitor_interval_s=5.0,
    )
    assert run_batch(spec, tmp_path, 2) == 1
    events = read_events(tmp_path)
    assert [(e.type, e.job) for e in events] == [("batch_started", None), ("job_failed", "bad")]
    started, failed = events
    assert started.data == {"jobs": 3, "num_processes": 2, "nodes": 1, "monitor_interval_s": 5.0}
    assert started.hpc_job_id == failed.hpc_job_id == "4242"
    assert started.host == socket.gethostname() and started.batch == "b"
    assert failed.data == {"return_code": 3, "reason": None}


def test_failed_node_setup_is_an_event_with_its_exit_code(tmp_path):
    spec = BatchSpec(batch="b", jobs=(JobSpec("a", "true"),), node_setup_command="exit 4")
    assert run_batch(spec, tmp_path, 1) == 1
    setup_failed = [e for e in read_events(tmp_path) if e.type == "node_setup_failed"]
    assert len(setup_failed) == 1 and "exit code 4" in setup_failed[0].message


def test_a_batch_whose_every_job_fails_to_start_ends_at_once(tmp_path, monkeypatch):
    """It used to wait for a child that never existed, until a signal came."""

    def spawn(self, name, argv):
        raise OSError(28, "No space left on device", f"{self.output_dir}/job-output/{name}.out")

    monkeypatch.setattr(runner_module.BatchRunner, "_spawn", spawn)
    rescue = threading.Timer(10, os.kill, (os.getpid(), signal.SIGTERM))
    rescue.start()
    try:
        code = run_batch(BatchSpec(batch="b", jobs=(JobSpec("a", "true"),)), tmp_path, 1)
    finally:
        rescue.cancel()
    assert code == 1
    assert by_name(tmp_path)["a"].status == "missing"
    assert [e.job for e in read_events(tmp_path) if e.type == "job_failed"] == ["a"]


def test_a_job_killed_by_a_signal_records_its_rusage(tmp_path):
    spec = BatchSpec(batch="b", jobs=(JobSpec("killed", "kill -9 $$"),))
    assert run_batch(spec, tmp_path, 1) == 1
    record = by_name(tmp_path)["killed"]
    assert record.return_code == 128 + 9 and record.reason == "killed by signal 9"
    assert record.max_rss_bytes and record.max_rss_bytes > 0 and record.cpu_time_s is not None


def test_a_jobs_peak_rss_does_not_inherit_the_runners_earlier_peak(tmp_path):
    """The runner here is this test process: a 300 MB peak of its own, gone before the batch
    starts, must not show up as the peak of a job that uses almost nothing."""
    peak = b"\1" * (300 << 20)
    del peak
    rss_now = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert run_batch(BatchSpec(batch="b", jobs=(JobSpec("small", "true"),)), tmp_path, 1) == 0
    assert by_name(tmp_path)["small"].max_rss_bytes < rss_now + (100 << 20)


def test_a_batch_specs_dict_is_what_asdict_gives():
    from dataclasses import asdict

    from airflow_jobforge.rundir.batches import BatchSpec, JobSpec

    spec = BatchSpec(
        "g-0000",
        (
            JobSpec("a", "true"),
            JobSpec("b", "echo b", ("a",), ("x.y",), True, "custom"),
        ),
        num_processes=3,
        node_setup_command="setup",
        node_teardown_command="teardown",
        env={"K": "V"},
        monitor_interval_s=2.5,
    )
    data = spec.to_dict()
    assert data == asdict(spec) and type(data["jobs"]) is tuple
    assert data["env"] is not spec.env  # a copy, as asdict's
    assert BatchSpec.from_dict(data) == spec
