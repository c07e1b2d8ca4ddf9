"""Wall time of the same configs through the real deployment and through `jobforge run`.

Needs root, the SLURM cluster (scripts/slurm/start.sh) and the deployment
(scripts/airflow/start.sh). For each config: the deployment run from the REST trigger to
the run's end as the REST API reports it (scheduler, LocalExecutor workers, triggerer), and
`jobforge run --backend slurm` from its start to its exit (embedded Airflow on SQLite,
start-up included). Both submit through the SLURM CLI on this machine.

    .venv/bin/python benchmarks/deployment.py [--jobs 2000 --batches 20] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.deployment.conftest import STATE_DIR, Deployment, read_env  # noqa: E402

BENCH = Path("/tmp/jobforge-bench")
DAG_FILE = '''"""Written by benchmarks/deployment.py: its DAGs."""
from airflow_jobforge.dag.factory import load_dags

load_dags("{configs}/*.json", globals(), backend="slurm", output_dir="{out}",
          python="{python}", dag_id_prefix="jobforge_bench_")
'''


def configs(jobs: int, batches: int) -> dict[str, dict]:
    pipeline = json.loads((REPO / "examples/configs/pipeline.json").read_text())
    size = -(-jobs // batches)
    many = {
        "jobs": [{"name": f"j{i:05d}", "command": "true"} for i in range(jobs)],
        "submission_groups": [
            {
                "name": "g",
                "slurm": {"walltime": "30"},
                "batching": {"per_node_batch_size": size, "num_processes": 2},
            }
        ],
    }
    return {"pipeline": pipeline, f"true_{jobs}_in_{batches}": many}


def deployment_run(client: Deployment, dag_id: str) -> tuple[float, str]:
    started = time.perf_counter()
    run_id = client.trigger(dag_id)
    state = client.wait_run(dag_id, run_id, timeout=1800)
    return time.perf_counter() - started, state


def embedded_run(config: Path, home: Path) -> tuple[float, int]:
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    rc = subprocess.run(
        [str(REPO / ".venv/bin/jobforge"), "run", str(config), "--backend", "slurm",
         "--output", str(BENCH / "out-embedded"), "--airflow-home", str(home)],
        env=env, capture_output=True, text=True, check=False,
    ).returncode
    return time.perf_counter() - started, rc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    client = Deployment(read_env(STATE_DIR / "env"))
    folder = BENCH / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    (BENCH / "out").mkdir(exist_ok=True)
    found = configs(args.jobs, args.batches)
    for stem, config in found.items():
        (folder / f"{stem}.json").write_text(json.dumps(config))
    home = Path(tempfile.mkdtemp(prefix="jobforge-bench-home-"))
    embedded_run(folder / "pipeline.json", home)  # migrates the embedded DB once, untimed
    written = time.perf_counter()
    client.write_dag(
        "jobforge_bench.py",
        DAG_FILE.format(configs=folder, out=BENCH / "out", python=sys.executable),
    )

    visible = {}
    for stem in found:  # every DAG parsed and unpaused before anything runs
        client.wait_dag(f"jobforge_bench_{stem}", timeout=300)
        client.unpause(f"jobforge_bench_{stem}")
        visible[stem] = time.perf_counter() - written

    print(f"{'config':<24} {'deployment':>12} {'jobforge run':>14} {'ratio':>7}")
    try:
        _compare(client, found, folder, home, visible, args.repeat)
    finally:
        client.remove_dag("jobforge_bench.py")  # its DAGs would be parsed by every test run


def _compare(
    client: Deployment,
    found: dict[str, dict],
    folder: Path,
    home: Path,
    visible: dict[str, float],
    repeat: int,
) -> None:
    for stem in found:
        for _ in range(repeat):
            deployed, state = deployment_run(client, f"jobforge_bench_{stem}")
            embedded, rc = embedded_run(folder / f"{stem}.json", home)
            print(
                f"{stem:<24} {deployed:>10.1f} s {embedded:>12.1f} s {deployed / embedded:>6.2f}x"
                f"   (deployment run {state}, jobforge run exit {rc}; DAG visible "
                f"{visible[stem]:.1f} s after its file was written)"
            )


if __name__ == "__main__":
    main()
