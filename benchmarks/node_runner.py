"""The node runner against the cost of starting the jobs at all, side by side in one run.

N `true` jobs through `python -m airflow_jobforge.node run-batch` (what a node runs: Python
start-up, the batch file, a record and two output files per job) against
`seq N | xargs -P P -I{} bash -c true`, best of 3 each, and their ratio; goal: within 1.3x.
At 2 processes with 2,000 jobs always, and at 16 processes with 20,000 jobs on a machine
with 16 CPUs or more. A third column runs xargs with each job's bash opening its two output
files (`exec >J.out 2>J.err`): the part of the gap that is the file system's, not the runner's.
Then the old figure: 1,000 jobs, 2 processes (goal < 5 s).

The runs alternate (xargs, xargs with files, runner) so a neighbour's load hits all three
alike; the spread (best-worst) is printed. Output dirs are deleted only at the end: on an
ext4 without a journal, creating a file scans past every inode deleted in the last minutes,
so deleting 4,000 output files between runs makes the next run's file creation 30x slower.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_jobforge.node.spec import BatchSpec, JobSpec
from airflow_jobforge.results import collect_results

GOAL = 1.3
ROUNDS = 3


def timed(run: Callable[..., None], *args: Any) -> float:
    started = time.perf_counter()
    run(*args)
    return time.perf_counter() - started


def xargs(n: int, processes: int, command: list[str]) -> None:
    subprocess.run(
        ["xargs", "-P", str(processes), "-I{}", *command],
        input="".join(f"{i}\n" for i in range(n)).encode(),
        check=True,
    )


def runner(batch_file: Path, out: Path, processes: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "airflow_jobforge.node", "run-batch", str(batch_file)]
        + ["--output", str(out), "--num-processes", str(processes), "--monitor-interval", "0"],
        check=True,
    )


def check(out: Path, n: int) -> None:
    """The figure counts only if every job left a successful record and its two files."""
    records = collect_results(out)
    assert len(records) == n and all(r.succeeded for r in records.values()), out
    assert len(os.listdir(out / "job-output")) == 2 * n, out


def spread(times: list[float]) -> str:
    return f"{min(times):6.2f} s ({min(times):.2f}-{max(times):.2f})"


def true_jobs(root: Path, n: int) -> Path:
    batch_file = root / f"batch-{n}.json"
    BatchSpec(batch="bench", jobs=tuple(JobSpec(f"j{i}", "true") for i in range(n))).dump(
        batch_file
    )
    return batch_file


def compare(root: Path, n: int, processes: int) -> None:
    batch_file = true_jobs(root, n)
    plain: list[float] = []
    with_files: list[float] = []
    ours: list[float] = []
    for k in range(ROUNDS):
        files = root / f"xargs-{n}-{processes}-{k}"
        files.mkdir()
        to_files = ["bash", "-c", 'exec >"$0.out" 2>"$0.err"; true', f"{files}/j{{}}"]
        out = root / f"runner-{n}-{processes}-{k}"
        plain.append(timed(xargs, n, processes, ["bash", "-c", "true"]))
        with_files.append(timed(xargs, n, processes, to_files))
        ours.append(timed(runner, batch_file, out, processes))
        check(out, n)
    ratio = min(ours) / min(plain)
    print(
        f"{n:>6} jobs, {processes:>2} processes | xargs {spread(plain)} | "
        f"xargs + output files {spread(with_files)} | runner {spread(ours)} | "
        f"ratio {ratio:.2f}x (goal {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'}), "
        f"{min(with_files) / min(plain):.2f}x for xargs + files | "
        f"runner {n / min(ours):,.0f} jobs/s"
    )


def main() -> None:
    cpus = os.cpu_count() or 1
    print(f"best of {ROUNDS} (best-worst); {cpus} CPUs; `true` jobs, monitor off")
    with tempfile.TemporaryDirectory(prefix="jobforge-bench-") as tmp:
        root = Path(tmp)
        compare(root, 2_000, 2)
        if cpus >= 16:
            compare(root, 20_000, 16)
        else:
            print(f"20000 jobs, 16 processes: needs a machine with 16 CPUs (this one has {cpus})")
        old = []
        batch_file = true_jobs(root, 1_000)
        for k in range(ROUNDS):
            out = root / f"old-{k}"
            old.append(timed(runner, batch_file, out, 2))
            check(out, 1_000)
        print(f"  1000 jobs,  2 processes | runner {spread(old)} (goal < 5 s)")


if __name__ == "__main__":
    main()
