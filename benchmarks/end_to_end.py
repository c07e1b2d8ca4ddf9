"""End-to-end wall time of `jobforge run --backend slurm` (Airflow start-up included), on the
cluster of scripts/slurm/start.sh. Needs root.

  1,000 jobs of ~0.04 s CPU, batches of 250, 2 processes per node (goal < 40 s; ideal
  N x t / CPUs; JADE took 274 s for this on the same kind of machine)
  200 CPU-bound jobs of ~1.6 s, one batch run by 2 processes on 2 CPUs, as a user would
  configure them (goal: within 10 s of N x t / CPUs)

Options: --skip-long (no 200-job run), --only-long (only it), --warm (a migrated home).
Each run prints where its time went: launch to the first job's start (Airflow start-up,
submission, SLURM scheduling), the jobs themselves, and the last job's end to the exit
(noticing the batch ended, result and summary tasks), and the CPU the jobforge process
itself used (it competes with the jobs for the 2 cores).

t is measured twice: by calibration (every CPU running one loop job, before and after the
run, averaged) and by the jobs themselves in the run (their records' exec_time_s). This VM's
speed drifts by up to 20 % within minutes, so the in-run figure is the fairer one:
overhead = wall - sum(exec_time_s) / CPUs.
"""

from __future__ import annotations

import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOOP = "i=0; while [ $i -lt {n} ]; do i=$((i+1)); done"


def time_loops(n: int, rounds: int = 4) -> float:
    """Seconds one loop job takes while every CPU runs one, as in the run: on a VM, a busy
    neighbour vCPU (shared host core, cache, memory bandwidth) can slow a job down."""
    cpus = os.cpu_count() or 1
    started = time.perf_counter()
    for _ in range(rounds):
        procs = [subprocess.Popen(["bash", "-c", LOOP.format(n=n)]) for _ in range(cpus)]
        for proc in procs:
            proc.wait()
    return (time.perf_counter() - started) / rounds


def calibrate(seconds: float) -> tuple[int, float]:
    """Loop count whose bash run takes about `seconds` of CPU here, and its measured time."""
    n = 20000
    for _ in range(3):
        n = max(1000, int(n * seconds / time_loops(n, rounds=2)))
    return n, time_loops(n)


def records_of(out: Path) -> list[dict]:
    """Every result record the run wrote (one DAG run under `out`)."""
    return [
        json.loads(line)
        for path in glob.glob(str(out / "*" / "results" / "*.jsonl"))
        for line in Path(path).read_text().splitlines()
    ]


def timeline(records: list[dict], launched: float, ended: float) -> str:
    """Where the wall time went, from the result records' job start/end times."""
    if not records:
        return "no records"
    first = min(r["start"] for r in records if r["start"])
    last = max(r["end"] for r in records)
    mean = sum(r["exec_time_s"] for r in records) / len(records)
    return (
        f"launch->first job {first - launched:.1f} s, jobs {last - first:.1f} s "
        f"(mean job {mean:.3f} s in the run), last job->exit {ended - last:.1f} s"
    )


def run(
    n_jobs: int, seconds: float, batch: int, processes: int, cpus: int, home: Path | None
) -> None:
    loops, before = calibrate(seconds)
    work = Path(tempfile.mkdtemp(prefix="jobforge-e2e-", dir="/tmp"))
    config = {
        "jobs": [{"name": f"j{i}", "command": LOOP.format(n=loops)} for i in range(n_jobs)],
        "submission_groups": [
            {
                "name": "cpu",
                "slurm": {"walltime": "30", "cpus_per_task": cpus},
                "batching": {"per_node_batch_size": batch, "num_processes": processes},
            }
        ],
    }
    path = work / f"e2e_{n_jobs}.json"
    path.write_text(json.dumps(config))
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    launched = time.time()
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_jobforge.cli.main",
            "run",
            str(path),
            "--backend",
            "slurm",
            "--output",
            str(work / "out"),
            "--airflow-home",
            str(home or work / "airflow"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    ended = time.time()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    summary = [line for line in result.stdout.splitlines() if " jobs: " in line]
    outcome = summary[-1] if summary else result.stderr[-500:]
    start_up = "Airflow start-up" + (" and DB migrate" if home is None else "")
    per_job = (before + time_loops(loops)) / 2  # before and after: this VM's speed drifts
    ideal = n_jobs * per_job / os.cpu_count()
    records = records_of(work / "out")
    in_run = sum(r["exec_time_s"] for r in records) / os.cpu_count()
    print(
        f"{n_jobs} jobs x {per_job:.3f} s, batches of {batch}, {processes} processes, "
        f"{cpus} CPUs per batch: {wall:.1f} s wall incl. {start_up}; {outcome}\n"
        f"  ideal from the jobs' own times {in_run:.1f} s: overhead {wall - in_run:.1f} s; "
        f"ideal from calibration {ideal:.1f} s: overhead {wall - ideal:.1f} s\n"
        f"  {timeline(records, launched, ended)}; "
        f"jobforge/Airflow process CPU {cpu:.1f} s"
    )


def main() -> None:
    """--skip-long: omit the 200-job run; --warm: reuse one migrated AIRFLOW_HOME, as a
    project's second `jobforge run` does (migrated once here, not timed)."""
    home = None
    if "--warm" in sys.argv:
        home = Path(tempfile.mkdtemp(prefix="jobforge-e2e-home-", dir="/tmp"))
        warm_up(home)
    if "--only-long" not in sys.argv:
        run(1000, 0.039, 250, 2, 2, home)
    if "--skip-long" not in sys.argv:
        run(200, 1.6, 200, 2, 2, home)


def warm_up(home: Path) -> None:
    """Migrate `home`'s metadata DB with a one-job run, outside any timing."""
    work = Path(tempfile.mkdtemp(prefix="jobforge-e2e-warm-", dir="/tmp"))
    path = work / "warm.json"
    path.write_text(json.dumps({"jobs": [{"name": "warm", "command": "true"}]}))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_jobforge.cli.main",
            "run",
            str(path),
            "--backend",
            "slurm",
            "--output",
            str(work / "out"),
            "--airflow-home",
            str(home),
        ],
        capture_output=True,
        check=True,
    )


if __name__ == "__main__":
    main()
