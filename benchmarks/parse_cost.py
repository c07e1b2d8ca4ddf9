"""Prints what parsing a `load_dags` DAG file costs a task's worker and the dag-processor.

Airflow 3 re-parses the DAG file before every task. Here a folder holds a 6-job, a 10,000-job
and a 100,000-job config (`true` jobs, batches of 500) and one DAG file loads them all. Each
figure is a fresh Python process that imports what Airflow's task runner has imported, sets
the parsing context as the task runner does (`_AIRFLOW_PARSING_CONTEXT_DAG_ID` / `_TASK_ID`),
and times `BundleDagBag(dag_folder=<the file>)` — the span the task runner logs as
`dag_file_parse_ms` — then looks the task up as the runner does. Worker figures are the
median of REPEAT processes.

Goals: a task of the small DAG < 0.3 s; a task of the 100,000-job DAG with the render cache
warm < 1.0 s; the dag-processor's full parse (no context) well inside Airflow's 30 s import
timeout. Also prints each big DAG's serialized size (the JSON the dag-processor stores).

    .venv/bin/python benchmarks/parse_cost.py
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPEAT = 3
BATCH = 500
CONFIGS = {"small": 6, "jobs10k": 10_000, "jobs100k": 100_000}

DAG_FILE = '''"""Benchmark DAG file: every config of the folder is a DAG."""
from airflow_jobforge.dag.factory import load_dags

load_dags({pattern!r}, globals(), backend="local", output_dir={output!r})
'''

# Runs in the fresh process: as a worker (context set) or as the dag-processor (no context).
CHILD = r"""
import json, sys, time
from pathlib import Path
import airflow.sdk.execution_time.task_runner  # a worker has these before it parses
from airflow.dag_processing.dagbag import BundleDagBag

dag_file, task_id, sizes = sys.argv[1], sys.argv[2], sys.argv[3] == "sizes"
started = time.perf_counter()
bag = BundleDagBag(
    dag_folder=dag_file,
    safe_mode=False,
    load_op_links=False,
    bundle_path=Path(dag_file).parent,
    bundle_name="bench",
)
took = time.perf_counter() - started
out = {
    "parse_s": took,
    "import_errors": bag.import_errors,
    "tasks": {dag_id: len(dag.task_dict) for dag_id, dag in bag.dags.items()},
}
if task_id:
    (dag,) = bag.dags.values()
    task = dag.task_dict[task_id]
    spec = getattr(task, "batch", None)
    out["task_jobs"] = len(spec["jobs"]) if isinstance(spec, dict) else None
if sizes:
    from airflow.serialization.serialized_objects import DagSerialization

    out["serialized"] = {}
    for dag_id, dag in bag.dags.items():
        started = time.perf_counter()
        text = json.dumps(DagSerialization.to_dict(dag))
        out["serialized"][dag_id] = (len(text), time.perf_counter() - started)
print("RESULT " + json.dumps(out))
"""


def write_config(path: Path, n: int) -> None:
    jobs = [{"name": f"j{i}", "command": "true"} for i in range(n)]
    groups = [{"name": "g", "batching": {"per_node_batch_size": BATCH}}]
    path.write_text(json.dumps({"jobs": jobs, "submission_groups": groups}))


def parse(
    env: dict[str, str], dag_file: Path, dag_id: str = "", task_id: str = "", sizes: bool = False
) -> dict[str, Any]:
    env = dict(env)
    if dag_id:
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
        env["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = task_id
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(dag_file), task_id, "sizes" if sizes else ""],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            if result["import_errors"]:
                raise SystemExit(f"import errors: {result['import_errors']}")
            return result
    raise SystemExit(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")


def median_parse(env: dict[str, str], dag_file: Path, dag_id: str, task_id: str) -> float:
    return statistics.median(
        parse(env, dag_file, dag_id, task_id)["parse_s"] for _ in range(REPEAT)
    )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="jobforge-parse-cost-"))
    try:
        run(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path) -> None:
    configs, dags, cache = root / "configs", root / "dags", root / "cache"
    configs.mkdir()
    dags.mkdir()
    for name, n in CONFIGS.items():
        write_config(configs / f"{name}.json", n)
    dag_file = dags / "jobforge_bench.py"
    dag_file.write_text(
        DAG_FILE.format(pattern=str(configs / "*.json"), output=str(root / "output"))
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        "JOBFORGE_CACHE_DIR": str(cache),
    }
    env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
    env.pop("_AIRFLOW_PARSING_CONTEXT_TASK_ID", None)
    big, big_task = "jobforge_jobs100k", "g.submit_0100"
    print(f"folder: {', '.join(f'{n:,} jobs' for n in CONFIGS.values())}; batches of {BATCH}")

    uncached = parse({**env, "JOBFORGE_CACHE_DIR": "off"}, dag_file)
    print(
        f"whole file, no context, no cache (what every task paid before): "
        f"{uncached['parse_s']:.2f} s"
    )

    small = median_parse(env, dag_file, "jobforge_small", "g.job_j3")
    print(f"task of the 6-job DAG next to the 100k one: {small:.2f} s (goal < 0.3 s)")

    shutil.rmtree(cache, ignore_errors=True)
    cold = parse(env, dag_file, big, big_task)
    print(
        f"task of the 100k DAG, cache cold: {cold['parse_s']:.2f} s "
        f"({cold['tasks'][big]} tasks; {big_task} holds {cold['task_jobs']} jobs)"
    )
    warm = median_parse(env, dag_file, big, big_task)
    print(f"task of the 100k DAG, cache warm: {warm:.2f} s (goal < 1.0 s)")

    shutil.rmtree(cache, ignore_errors=True)
    full_cold = parse(env, dag_file)
    full_warm = parse(env, dag_file, sizes=True)
    print(
        f"dag-processor, whole file (no context): cache cold {full_cold['parse_s']:.2f} s, "
        f"warm {full_warm['parse_s']:.2f} s (Airflow's import timeout: 30 s)"
    )
    for dag_id in ("jobforge_jobs10k", big):
        size, took = full_warm["serialized"][dag_id]
        print(
            f"serialized {dag_id}: {size / 1e6:.1f} MB JSON, {full_warm['tasks'][dag_id]} "
            f"tasks, serialize {took:.2f} s"
        )


if __name__ == "__main__":
    main()
