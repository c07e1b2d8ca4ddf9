"""Prints what a pipeline costs: a two-stage JADE pipeline run by JADE and by jobforge, and
the planning and launching of a generated stage of 10,000 jobs. No SLURM; local backends.

1. The JADE pipeline of tests/integration/test_jade_pipeline.py (`build_jade_pipeline`:
   auto-config scripts calling `jade config create`, 4 simulations, 4 aggregations and a
   summary blocked by them), run three times, each from its own copy:
   `jade pipeline submit` (hpc type local; JADE's default poll interval, 10 s, and 1 s),
   `jobforge run
   --no-airflow`, and `jobforge run` (embedded Airflow, a fresh home: its DB migration is in
   the time). Wall time side by side, ratios against JADE.
2. A generated stage of N `true` jobs (`--jobs`, default 10,000), default batching:
   (a) in this process: the generator (run as the plan task runs it), `load_stage_config`,
       `apply_stage_overrides`, `planned_batches`: what the stage's plan task does; for a
       config in our format and for one `jade config create` wrote;
   (b) `jobforge run` (embedded Airflow, the home of part 1) of a pipeline of that one stage:
       its wall time, and the plan task's duration from the metadata DB.

Options: --jobs N, --skip-jade (no JADE run), --jade-poll-interval S, --deployment (the same
pipeline as a DAG of the running test deployment, triggered through its REST API).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_jobforge.config.pipeline import (  # noqa: E402
    StageOverrides,
    apply_stage_overrides,
    load_stage_config,
)
from airflow_jobforge.planning.stages import StageRun, planned_batches  # noqa: E402
from tests.integration.test_jade_pipeline import (  # noqa: E402
    build_jade_pipeline,
    run_jade,
    run_jobforge,
    tree,
)

GENERATOR = """\
import json, os, sys
n = int(sys.argv[1])
jobs = [{"name": f"j{i}", "command": "true"} for i in range(n)]
json.dump({"jobs": jobs}, open(os.environ["JOBFORGE_STAGE_CONFIG"], "w"))
print("generated", n, "jobs")
"""


DEPLOYMENT_DAG_TEXT = '''"""Written by benchmarks/pipeline.py --deployment, removed after."""
from airflow_jobforge.config.pipeline import load_pipeline
from airflow_jobforge.dag import build_pipeline_dag

dag = build_pipeline_dag(
    load_pipeline("{pipeline}", check_configs=False)[0],
    "{dag_id}",
    file="{pipeline}",
    backend="local",
    output_dir="{output}",
    python="{python}",
    poll_interval=1.0,
    tags=["jobforge", "benchmark"],
)
'''


def deployment_run(poll: float | None) -> tuple[float, dict[str, str]]:
    """The same JADE pipeline as a DAG of the running test deployment (scripts/airflow/,
    LocalExecutor; local backend, as JADE's runs here are local): REST trigger -> run end."""
    from tests.deployment.conftest import STATE_DIR, Deployment, read_env

    client = Deployment(read_env(STATE_DIR / "env"))
    stamp = time.strftime("%Y%m%d%H%M%S")
    base = Path("/tmp/jobforge-deployment/bench-pipeline") / stamp
    pipeline = build_jade_pipeline(base / "pipeline", poll_interval=poll)
    dag_id = f"jobforge_bench_jade_pipeline_{stamp}"
    dag_file = f"{dag_id}.py"
    client.write_dag(
        dag_file,
        DEPLOYMENT_DAG_TEXT.format(
            pipeline=pipeline.pipeline_file,
            dag_id=dag_id,
            output=base / "out",
            python=sys.executable,
        ),
    )
    try:
        client.wait_dag(dag_id, timeout=180)
        client.unpause(dag_id)
        started = time.perf_counter()
        run_id = client.trigger(dag_id)
        state = client.wait_run(dag_id, run_id, timeout=600, poll_s=0.25)
        seconds = time.perf_counter() - started
        assert state == "success", client.task_states(dag_id, run_id)
    finally:
        client.remove_dag(dag_file)
        client.http.close()
    return seconds, tree(pipeline.results)


def two_stage(
    base: Path, skip_jade: bool, poll: float | None, home: Path, deployment: bool = False
) -> None:
    times: dict[str, float] = {}
    outputs = {}
    if not skip_jade:
        pipeline = build_jade_pipeline(base / "jade", poll_interval=poll)
        times["JADE (jade pipeline submit)"] = run_jade(pipeline, base / "jade-out")
        outputs["jade"] = tree(pipeline.results)
        if poll is None:  # JADE's default poll dominates its time: also as fast as it goes
            pipeline = build_jade_pipeline(base / "jade-fast", poll_interval=1)
            times["JADE, poll interval 1 s (-p 1)"] = run_jade(pipeline, base / "jade-fast-out")
            outputs["jade-fast"] = tree(pipeline.results)
    pipeline = build_jade_pipeline(base / "nodag", poll_interval=poll)
    times["jobforge run --no-airflow"] = run_jobforge(pipeline, base / "nodag-out", "--no-airflow")
    outputs["nodag"] = tree(pipeline.results)
    pipeline = build_jade_pipeline(base / "embedded", poll_interval=poll)
    times["jobforge run (embedded, new home)"] = run_jobforge(
        pipeline, base / "embedded-out", "--airflow-home", str(home)
    )
    outputs["embedded"] = tree(pipeline.results)
    pipeline = build_jade_pipeline(base / "embedded2", poll_interval=poll)
    times["jobforge run (embedded, again)"] = run_jobforge(
        pipeline, base / "embedded2-out", "--airflow-home", str(home)
    )
    if deployment:
        seconds, outputs["deployment"] = deployment_run(poll)
        times["jobforge deployment (REST trigger -> end)"] = seconds
    same = all(o == next(iter(outputs.values())) for o in outputs.values())
    jade = times.get("JADE (jade pipeline submit)")
    poll_text = "default 10 s" if poll is None else f"{poll:g} s"
    print(f"Two-stage JADE pipeline, 4 + 5 jobs (JADE poll interval {poll_text}):")
    for name, seconds in times.items():
        ratio = f"{seconds / jade:5.2f}x JADE" if jade else ""
        print(f"  {name:42} {seconds:7.1f} s  {ratio}")
    print(f"  outputs identical across runs: {same}")


def plan_in_process(base: Path, jobs: int) -> None:
    """Our format (a python generator) and JADE's (`jade config create`, imported on load)."""
    script = base / "gen.py"
    script.write_text(GENERATOR)
    (base / "true.txt").write_text("true\n" * jobs)
    jade = Path(sys.executable).parent / "jade"
    generators = {
        "our": f"{sys.executable} {script} {jobs}",
        "JADE's": f"{jade} config create {base / 'true.txt'} -c $JOBFORGE_STAGE_CONFIG",
    }
    print(f"\nGenerated stage of {jobs} `true` jobs, planned in this process (the plan task):")
    for number, (kind, command) in enumerate(generators.items()):
        run = StageRun(str(base / f"plan-{number}"), "generate", 1)
        started = time.perf_counter()
        subprocess.run(run.generator_argv(command), check=True, capture_output=True)
        generated = time.perf_counter()
        config, _ = load_stage_config(run.config_path, stage="generate")
        loaded = time.perf_counter()
        config = apply_stage_overrides(config, StageOverrides(), stage="generate")
        overridden = time.perf_counter()
        batches = planned_batches(config)
        planned = time.perf_counter()
        print(f"  config in {kind} format:")
        print(f"    generator                            {generated - started:6.2f} s")
        print(f"    load_stage_config                    {loaded - generated:6.2f} s")
        print(f"    apply_stage_overrides                {overridden - loaded:6.2f} s")
        print(f"    planned_batches -> {len(batches):4} batches      {planned - overridden:6.2f} s")
        print(f"    total                                {planned - started:6.2f} s")


def launch_embedded(base: Path, jobs: int, home: Path) -> None:
    script = base / "gen.py"
    pipeline = base / "big.json"
    stage = {"name": "generate", "command": f"{sys.executable} {script} {jobs}"}
    pipeline.write_text(json.dumps({"stages": [stage]}))
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "airflow_jobforge.cli.main", "run", str(pipeline)]
        + ["-o", str(base / "big-out"), "--airflow-home", str(home)],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    summary = [line for line in result.stdout.splitlines() if " jobs: " in line]
    print(f"\n`jobforge run` (embedded) of a pipeline whose generated stage has {jobs} jobs:")
    print(
        f"  wall {seconds:.1f} s, exit code {result.returncode}; {summary[-1] if summary else ''}"
    )
    for task, duration, count in task_durations(home):
        print(f"  task {task:36} {duration:7.2f} s" + (f" (x{count})" if count > 1 else ""))
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:])


def task_durations(home: Path) -> list[tuple[str, float, int]]:
    """(task, seconds, map count) of the latest run of the pipeline's DAG, from the metadata
    DB: a mapped task's instances summed."""
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, SUM(duration), COUNT(*) FROM task_instance WHERE run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id LIKE '%big%' ORDER BY id DESC LIMIT 1) "
            "AND dag_id LIKE '%big%' GROUP BY task_id ORDER BY MIN(start_date)"
        ).fetchall()
    return [(task, float(seconds or 0), count) for task, seconds, count in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs of the generated stage")
    parser.add_argument("--skip-jade", action="store_true", help="no JADE run")
    parser.add_argument(
        "--jade-poll-interval",
        type=float,
        help="JADE's -p (default: JADE's own, 10 s, then 1 s)",
    )
    parser.add_argument(
        "--deployment",
        action="store_true",
        help="also run it in the test deployment (scripts/airflow/start.sh, as root)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobforge-bench-pipeline-") as tmp:
        base = Path(tmp)
        home = base / "airflow-home"
        two_stage(base, args.skip_jade, args.jade_poll_interval, home, args.deployment)
        plan_in_process(base, args.jobs)
        launch_embedded(base, args.jobs, home)


if __name__ == "__main__":
    main()
