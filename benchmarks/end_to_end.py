"""End-to-end wall time of `jobforge run --backend slurm` (Airflow start-up included), on the
cluster of scripts/slurm/start.sh. Needs root.

  1,000 jobs of ~0.04 s CPU, batches of 250, 2 processes per node (goal < 40 s; ideal
  N x t / CPUs; JADE took 274 s for this on the same kind of machine)
  200 CPU-bound jobs of ~1.6 s (goal: within 10 s of N x t / CPUs); --skip-long to omit it
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOOP = "i=0; while [ $i -lt {n} ]; do i=$((i+1)); done"


def calibrate(seconds: float) -> tuple[int, float]:
    """Loop count whose bash run takes about `seconds` of CPU here, and its measured time."""
    n = 20000
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(5):
            subprocess.run(["bash", "-c", LOOP.format(n=n)], check=True)
        per_job = (time.perf_counter() - started) / 5
        n = max(1000, int(n * seconds / per_job))
    started = time.perf_counter()
    for _ in range(5):
        subprocess.run(["bash", "-c", LOOP.format(n=n)], check=True)
    return n, (time.perf_counter() - started) / 5


def run(n_jobs: int, seconds: float, batch: int, processes: int, cpus: int) -> None:
    loops, per_job = calibrate(seconds)
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
    ideal = n_jobs * per_job / os.cpu_count()
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
            str(work / "airflow"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    summary = [line for line in result.stdout.splitlines() if " jobs: " in line]
    outcome = summary[-1] if summary else result.stderr[-500:]
    print(
        f"{n_jobs} jobs x {per_job:.3f} s, batches of {batch}, {processes} processes, "
        f"{cpus} CPUs per batch: {wall:.1f} s wall incl. Airflow start-up and DB migrate "
        f"(ideal {ideal:.1f} s, overhead {wall - ideal:.1f} s); {outcome}"
    )


def main() -> None:
    run(1000, 0.039, 250, 2, 2)
    if "--skip-long" not in sys.argv:
        run(200, 1.6, 100, 1, 1)


if __name__ == "__main__":
    main()
