"""What the node runner keeps while it starts jobs at close to xargs' speed: each job in its own
session, on its own fresh output files, with its own name in its environment, stdin on
/dev/null, default SIGPIPE, none of the runner's descriptors, and a record on disk as soon as
it has ended. Real processes throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from airflow_jobforge.node.runner import run_batch
from airflow_jobforge.rundir import ResultRecord, read_records, results_file
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec


def by_name(out: Path) -> dict[str, ResultRecord]:
    return {r.name: r for r in read_records(results_file(out, "b"))}


def start_runner(
    batch: BatchSpec, tmp_path: Path, **popen: object
) -> tuple[subprocess.Popen, Path]:
    batch_file = tmp_path / "batch.json"
    batch.dump(batch_file)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "airflow_jobforge.node", "run-batch", str(batch_file)]
    return subprocess.Popen([*argv, "--output", str(out)], **popen), out  # type: ignore[call-overload]


def wait_for(path: Path, lines: int = 1, timeout: float = 60) -> None:
    """Until `path` holds `lines` complete lines; the deadline only ends a failing test."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_bytes().count(b"\n") >= lines):
        assert time.monotonic() < deadline, f"{path}: fewer than {lines} lines"
        time.sleep(0.02)


def test_every_job_has_its_own_name_output_files_and_exactly_one_record(tmp_path):
    jobs = tuple(JobSpec(f"j{i}", 'echo "$JOBFORGE_JOB_NAME"; echo err >&2') for i in range(60))
    jobs += tuple(JobSpec(f"quiet{i}", "true") for i in range(20))
    assert run_batch(BatchSpec(batch="b", jobs=jobs), tmp_path, 4) == 0
    records = list(read_records(results_file(tmp_path, "b")))
    assert sorted(r.name for r in records) == sorted(j.name for j in jobs)
    for i in range(60):
        assert (tmp_path / "job-output" / f"j{i}.out").read_text() == f"j{i}\n"
        assert (tmp_path / "job-output" / f"j{i}.err").read_text() == "err\n"
    for i in range(20):  # a job that writes nothing still has both files, empty
        assert (tmp_path / "job-output" / f"quiet{i}.out").stat().st_size == 0
        assert (tmp_path / "job-output" / f"quiet{i}.err").stat().st_size == 0


def test_a_job_runs_in_its_own_session_with_stdin_on_dev_null(tmp_path):
    command = (
        'read -r pid comm state ppid pgrp sid rest < /proc/$$/stat; echo "$pgrp $sid $$"; '
        "readlink /proc/$$/fd/0"
    )
    assert run_batch(BatchSpec(batch="b", jobs=(JobSpec("a", command),)), tmp_path, 1) == 0
    ids, stdin = (tmp_path / "job-output" / "a.out").read_text().splitlines()
    pgrp, sid, pid = ids.split()
    assert pgrp == sid == pid
    assert stdin == "/dev/null"


def test_a_jobs_pipeline_gets_sigpipe_like_in_a_shell(tmp_path):
    """Python ignores SIGPIPE; a job must not inherit that, or `yes | head` never ends well."""
    command = 'yes | head -c 1 > /dev/null; echo "${PIPESTATUS[0]}"'
    assert run_batch(BatchSpec(batch="b", jobs=(JobSpec("a", command),)), tmp_path, 1) == 0
    assert (tmp_path / "job-output" / "a.out").read_text() == f"{128 + signal.SIGPIPE}\n"
    assert (tmp_path / "job-output" / "a.err").read_text() == ""


def test_a_descriptor_the_runner_inherited_never_reaches_a_job(tmp_path):
    read_end, write_end = os.pipe()
    batch = BatchSpec(
        batch="b",
        jobs=(JobSpec("a", f"[ -e /dev/fd/{write_end} ] && echo leaked || echo closed"),),
    )
    proc, out = start_runner(batch, tmp_path, pass_fds=(write_end,))
    os.close(write_end)
    assert proc.wait(timeout=30) == 0
    os.close(read_end)
    assert (out / "job-output" / "a.out").read_text() == "closed\n"


def test_a_program_not_on_the_jobs_path_is_a_job_not_started(tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    spec = BatchSpec(batch="b", jobs=(JobSpec("a", "true"),), env={"PATH": str(empty)})
    assert run_batch(spec, tmp_path / "out", 1) == 1
    record = by_name(tmp_path / "out")["a"]
    assert record.status == "missing"
    assert record.reason == "not started: No such file or directory: bash"


def test_without_posix_spawn_sessions_jobs_start_with_popen_alike(tmp_path, monkeypatch):
    """A C library without POSIX_SPAWN_SETSID (glibc < 2.26): same sessions, same records."""

    def no_setsid(*args: object, **kwargs: object) -> int:
        raise NotImplementedError("posix_spawn: setsid is unavailable on this platform")

    monkeypatch.setattr(os, "posix_spawn", no_setsid)
    command = 'read -r pid comm state ppid pgrp sid rest < /proc/$$/stat; echo "$sid $$"'
    jobs = (JobSpec("a", command), JobSpec("b2", "exit 3"), JobSpec("c", "kill -9 $$"))
    assert run_batch(BatchSpec(batch="b", jobs=jobs), tmp_path, 2) == 1
    sid, pid = (tmp_path / "job-output" / "a.out").read_text().split()
    assert sid == pid
    got = by_name(tmp_path)
    assert got["a"].return_code == 0 and got["b2"].return_code == 3
    assert got["c"].reason == "killed by signal 9"
    assert got["c"].max_rss_bytes


def test_sigterm_amid_a_stream_of_short_jobs_leaves_exactly_one_record_per_job(tmp_path):
    jobs = tuple(JobSpec(f"j{i:04d}", "true") for i in range(3000))
    proc, out = start_runner(BatchSpec(batch="b", jobs=jobs, num_processes=2), tmp_path)
    # Amid the stream: dozens of jobs recorded, thousands still to start, whatever the load.
    wait_for(results_file(out, "b"), lines=50)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    records = list(read_records(results_file(out, "b")))
    assert sorted(r.name for r in records) == sorted(j.name for j in jobs)
    statuses = {r.status for r in records}
    assert "finished" in statuses and "canceled" in statuses
    for r in records:
        if r.status == "finished":
            assert r.succeeded and (out / "job-output" / f"{r.name}.out").exists()


def test_a_sigkilled_runner_has_already_written_the_record_of_every_ended_job(tmp_path):
    """Records are written when a job is reaped, not held for later: with one process at a
    time, the last job starting proves the ones before it were reaped, so recorded."""
    pid_file = tmp_path / "pid"
    jobs = tuple(JobSpec(f"quick{i}", "true") for i in range(5))
    jobs += (JobSpec("last", f"echo $$ > {pid_file}; exec sleep 60"),)
    proc, out = start_runner(BatchSpec(batch="b", jobs=jobs, num_processes=1), tmp_path)
    try:
        wait_for(pid_file)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        got = by_name(out)
        assert sorted(got) == [f"quick{i}" for i in range(5)]
        assert all(r.succeeded for r in got.values())
    finally:  # the job outlives a SIGKILLed runner (own session): SLURM would kill it
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, FileNotFoundError, ValueError):
            pass
        if proc.poll() is None:
            proc.kill()


def test_a_runner_started_without_stdin_stdout_stderr_still_wires_each_jobs_own(tmp_path):
    """The runner's own descriptors then take 0-2: a job must still get /dev/null and its
    two files there, not one of the runner's."""
    spec = BatchSpec(batch="b", jobs=(JobSpec("a", "echo out; echo err >&2; cat"),))
    batch_file = tmp_path / "batch.json"
    spec.dump(batch_file)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "airflow_jobforge.node", "run-batch", str(batch_file)]
    closed = 'exec "$@" <&- >&- 2>&-'
    code = subprocess.run(
        ["bash", "-c", closed, "bash", *argv, "--output", str(out)], timeout=30, check=False
    ).returncode
    assert code == 0
    assert (out / "job-output" / "a.out").read_text() == "out\n"
    assert (out / "job-output" / "a.err").read_text() == "err\n"


def test_the_node_runner_starts_without_airflow_pydantic_or_the_config_models():
    """It starts on every batch's node: what it imports is paid once per batch."""
    probe = (
        "import sys, airflow_jobforge.node.__main__; "
        "print(' '.join(m for m in sys.modules if m.split('.')[0] in "
        "('airflow', 'pydantic', 'sqlalchemy') or m.startswith('airflow_jobforge.config')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert loaded == []
