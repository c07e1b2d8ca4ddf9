"""Prints DAG build time (config already validated) for 1k unbatched, 10k in batches of 100,
and 100k jobs in batches of 500 (the default), plus load+validate time of the 100k config.
Goals: 10k < 2 s, 1k unbatched < 2 s, 100k within Airflow's 30 s import timeout."""

from __future__ import annotations

import json
import os
import tempfile
import time

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="jobforge-bench-"))

from airflow.serialization.serialized_objects import DagSerialization

from airflow_jobforge.config import parse_configuration
from airflow_jobforge.dag.factory import build_dag


def config(n: int, batch: int):
    jobs = [
        {
            "name": f"j{i}",
            "command": f"python sim.py {i}",
            **({"blocked_by": [f"j{i - 1}"]} if i % 10 else {}),
        }
        for i in range(n)
    ]
    return jobs, {
        "jobs": jobs,
        "submission_groups": [{"name": "g", "batching": {"per_node_batch_size": batch}}],
    }


def main() -> None:
    for n, batch, goal in (
        (1_000, 1, "< 2 s"),
        (10_000, 100, "< 2 s"),
        (100_000, 500, "< 30 s with loading"),
    ):
        _, data = config(n, batch)
        started = time.perf_counter()
        cfg = parse_configuration(data)
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        dag = build_dag(cfg, f"bench_{n}", output_dir="/tmp/bench")
        built = time.perf_counter() - started
        started = time.perf_counter()
        serialized = DagSerialization.to_dict(dag)
        size = len(json.dumps(serialized)) / 1e6
        took = time.perf_counter() - started
        print(
            f"{n:>7} jobs, batches of {batch:>3}: build {built:.2f} s ({len(dag.task_dict)} "
            f"tasks), validate {loaded:.2f} s, total {built + loaded:.2f} s (goal {goal}); "
            f"serialize {took:.2f} s, {size:.1f} MB"
        )


if __name__ == "__main__":
    main()
