"""A full output dir, for real: a 300 KB tmpfs that the jobs fill.

Mounting needs root; elsewhere the tests skip, except under CI=true where they must run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_jobforge.config.models import SlurmParams
from airflow_jobforge.local.backend import LocalClient
from airflow_jobforge.rundir import (
    EXIT_OUTPUT_UNWRITABLE,
    collect_results,
    results_table,
    summarize,
    unwritable_reason,
)
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.slurm.script import SubmitRequest

FILL = "head -c 200000 /dev/zero; echo done"  # three at once need 600 KB
OVERFILL = "head -c 400000 /dev/zero"  # any one of them fills the disk before it ends


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 300 KB tmpfs: two jobs writing 200 KB each fill it."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: the full-disk tests must run, as root")
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def batch(n: int, command: str = FILL) -> BatchSpec:
    return BatchSpec(
        batch="b", jobs=tuple(JobSpec(f"j{i}", command) for i in range(n)), num_processes=n
    )


def test_runner_on_a_full_disk_says_so_at_once_and_loses_no_job(small_disk, tmp_path):
    """The jobs fill the disk before any record is written: the runner ends within seconds
    with exit code 74, names the results file and the error on stderr, and prints every
    record it could not write."""
    spec_file = tmp_path / "b.json"
    batch(3, OVERFILL).dump(spec_file)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "airflow_jobforge.node", "run-batch", str(spec_file)]
        + ["--output", str(small_disk / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 10
    assert result.returncode == EXIT_OUTPUT_UNWRITABLE
    results = small_disk / "out" / "results" / "b.jsonl"
    assert f"cannot write result records to {results}: No space left on device" in result.stderr
    written = set(collect_results(small_disk / "out"))
    unwritten = {
        line.split('"name":"', 1)[1].split('"', 1)[0]
        for line in result.stderr.splitlines()
        if "unwritten record: " in line
    }
    assert written | unwritten == {"j0", "j1", "j2"} and unwritten


def test_runner_writes_held_records_once_space_comes_back(small_disk, tmp_path):
    """A job fills the disk; the next one frees it: the first job's held record is written
    with the second's, so every job ends with a record."""
    out = small_disk / "out"
    spec = BatchSpec(
        batch="b",
        jobs=(
            JobSpec("fill", 'head -c 400000 /dev/zero > "$JOBFORGE_OUTPUT_DIR/big"'),
            JobSpec("free", 'rm "$JOBFORGE_OUTPUT_DIR/big"', blocked_by=("fill",)),
        ),
        num_processes=1,
    )
    spec_file = tmp_path / "b.json"
    spec.dump(spec_file)
    result = subprocess.run(
        [sys.executable, "-m", "airflow_jobforge.node", "run-batch", str(spec_file)]
        + ["--output", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "No space left on device" in result.stderr
    records = collect_results(out)
    assert set(records) == {"fill", "free"}
    assert records["fill"].return_code != 0 and records["free"].succeeded
    assert result.returncode == 1  # a job failed; no record was lost


def test_local_batch_on_a_full_disk_fails_within_seconds_with_the_reason(small_disk, tmp_path):
    """Through the local backend: the batch is FAILED within seconds (not UNKNOWN for 300 s),
    its reason names the exit file and 'No space left on device', and the summary lists
    every job: with a record, or as unknown because the output dir is not writable."""
    out = small_disk / "out"
    client = LocalClient(tmp_path / "state")
    request = SubmitRequest(
        tag="full", batch=batch(3), slurm=SlurmParams(), output_dir=str(out), python=sys.executable
    )
    job = client.submit(request, adopt=False)
    started = time.monotonic()
    while True:
        status = client.status([job.job_id], {job.job_id: job.exit_file})[job.job_id]
        if status.terminal or time.monotonic() - started > 20:
            break
        time.sleep(0.2)
    assert status.terminal and time.monotonic() - started < 10
    assert f"cannot write the exit file {job.exit_file}: No space left on device" in status.reason
    # Whether the first job's record still found room depends on which job ends first.
    if status.exit_code == EXIT_OUTPUT_UNWRITABLE:
        assert "output dir not writable" in status.reason
    else:
        assert status.exit_code == 1

    records = collect_results(out)
    problem = unwritable_reason(out)
    assert problem == f"No space left on device: {out}"
    summary = summarize(
        records.values(), ["j0", "j1", "j2"], f"output dir not writable ({problem})"
    )
    assert summary.total == 3 and summary.missing == 3 - len(records)
    table = results_table(["j0", "j1", "j2"], records, no_record_reason=summary.no_record_reason)
    for name in {"j0", "j1", "j2"} - set(records):
        assert f"unknown: output dir not writable (No space left on device: {out})" in next(
            line for line in table.splitlines() if line.startswith(name)
        )
