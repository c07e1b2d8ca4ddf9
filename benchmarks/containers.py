"""Prints what a container costs each job: N jobs of `true` run one at a time by the node
runner (no SLURM: the cost is the node's), bare and in each runtime installed here, with the
test images of scripts/containers/build-images.sh.

Per runtime: the batch's wall time, per job (wall / N), the jobs' mean recorded run time
(start to exit as the runner saw it), and the extra cost per job against the bare job. A
runtime that is not installed (apptainer on Debian) is printed as such.

  python benchmarks/containers.py [--jobs 50] [--runtimes bare charliecloud podman apptainer]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_jobforge.node.runner import run_batch  # noqa: E402
from airflow_jobforge.rundir import collect_results  # noqa: E402
from airflow_jobforge.rundir.batches import BatchSpec, ContainerSpec, JobSpec  # noqa: E402

STATE = Path("/var/lib/jobforge-containers")
IMAGES = {
    "podman": "localhost/jobforge-test:1",
    "charliecloud": str(STATE / "ch" / "jobforge-test"),
    "apptainer": str(STATE / "jobforge-test.sif"),
}
PROGRAMS = {"podman": "podman", "charliecloud": "ch-run", "apptainer": "apptainer"}


def one(runtime: str, jobs: int, base: Path) -> dict | None:
    container = None
    if runtime != "bare":
        if shutil.which(PROGRAMS[runtime]) is None:
            return None
        container = ContainerSpec(runtime=runtime, image=IMAGES[runtime])
    out = Path(tempfile.mkdtemp(prefix=f"{runtime}-", dir=base))
    spec = BatchSpec(
        "bench-0000",
        tuple(JobSpec(f"j{i:04d}", "true") for i in range(jobs)),
        num_processes=1,
        container=container,
    )
    started = time.perf_counter()
    code = run_batch(spec, out, monitor_interval_s=0)
    wall = time.perf_counter() - started
    records = collect_results(out)
    if code != 0 or len(records) != jobs or not all(r.succeeded for r in records.values()):
        bad = [r for r in records.values() if not r.succeeded][:3]
        raise SystemExit(f"{runtime}: the batch failed (exit {code}): {bad}")
    return {
        "wall_s": wall,
        "per_job_s": wall / jobs,
        "mean_run_s": statistics.fmean(r.exec_time_s for r in records.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument(
        "--runtimes", nargs="+", default=["bare", "charliecloud", "podman", "apptainer"]
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="jobforge-bench-containers-"))
    try:
        rows = {rt: one(rt, args.jobs, base) for rt in args.runtimes}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    bare = rows.get("bare")
    print(f"{args.jobs} jobs of `true`, one at a time, node runner without SLURM")
    print(f"{'runtime':<13} {'wall':>8} {'per job':>9} {'mean run':>9} {'extra per job':>14}")
    for runtime, row in rows.items():
        if row is None:
            print(f"{runtime:<13} {'not installed here (rendered and unit-tested only)':>43}")
            continue
        extra = f"{(row['per_job_s'] - bare['per_job_s']) * 1000:+.1f} ms" if bare else "-"
        print(
            f"{runtime:<13} {row['wall_s']:>7.2f}s {row['per_job_s'] * 1000:>7.1f}ms "
            f"{row['mean_run_s'] * 1000:>7.1f}ms {extra:>14}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
