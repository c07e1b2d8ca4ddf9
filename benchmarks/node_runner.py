"""Prints node runner wall time for 1,000 `true` jobs with 2 processes (goal < 5 s)."""

from __future__ import annotations

import tempfile
import time

from airflow_jobforge.node.runner import run_batch
from airflow_jobforge.node.spec import BatchSpec, JobSpec
from airflow_jobforge.results import collect_results, summarize


def main() -> None:
    n = 1000
    spec = BatchSpec(batch="bench", jobs=tuple(JobSpec(f"j{i}", "true") for i in range(n)))
    timings = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            run_batch(spec, out, num_processes=2)
            timings.append(time.perf_counter() - started)
            summary = summarize(collect_results(out).values())
    print(
        f"node runner, {n} 'true' jobs, 2 processes: best {min(timings):.2f} s, "
        f"worst {max(timings):.2f} s (goal < 5 s); {summary}"
    )


if __name__ == "__main__":
    main()
