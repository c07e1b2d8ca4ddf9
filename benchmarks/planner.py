"""Prints planner time for 100,000 jobs (count-based, chains of 10 jobs, batches of 100)."""

from __future__ import annotations

import time

from airflow_jobforge.config import parse_configuration
from airflow_jobforge.planning.planner import plan_batches


def main() -> None:
    n = 100_000
    jobs = [
        {"name": f"j{i}", "command": "true", **({"blocked_by": [f"j{i - 1}"]} if i % 10 else {})}
        for i in range(n)
    ]
    data = {
        "jobs": jobs,
        "submission_groups": [{"name": "g", "batching": {"per_node_batch_size": 100}}],
    }
    started = time.perf_counter()
    config = parse_configuration(data)
    loaded = time.perf_counter() - started
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        plan = plan_batches(config)
        timings.append(time.perf_counter() - started)
    print(f"validate {n} jobs: {loaded:.2f} s")
    print(
        f"plan {n} jobs -> {len(plan.batches)} batches: best {min(timings):.3f} s, "
        f"worst {max(timings):.3f} s (goal < 1 s)"
    )


if __name__ == "__main__":
    main()
