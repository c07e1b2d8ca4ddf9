"""100,000 `true` jobs in batches of 1,000 through the real deployment, against the same
batches through `jobforge run --no-airflow`, with where the time goes; then 10,000 one-job
jobs, which the factory submits as job arrays: submitted and counted, then canceled (the
2-CPU test cluster starts 2 one-job jobs a second: 10,000 run ~85 minutes), and 1,000 of
them run end to end.

Needs root, the SLURM cluster (scripts/slurm/start.sh) and the deployment
(scripts/airflow/start.sh). Goals (issue 12): the deployment run < 4 minutes on the 2-CPU
machine and <= 1.5x `jobforge run --no-airflow`; 10,000 one-job jobs in <= 10 sbatch calls.

    .venv/bin/python benchmarks/deployment_scale.py [--jobs 100000 --batch 1000]
        [--one-job 10000] [--one-job-run 1000] [--rounds 1] [--cpus 2]
        (0 skips a part; --jobs 0: one-job parts only; --rounds N: N deployment runs,
        each against the mean of the --no-airflow runs just before and after it, and the
        median of their ratios; --cpus 2: each batch takes both CPUs, so SLURM runs one
        batch at a time as --no-airflow does, instead of two)

Before each deployment run the same batches are also sbatch'd from this script, without
Airflow: the deployment's time over that one is what Airflow adds, and that one's over
--no-airflow is what SLURM adds (its per-allocation turnaround on one node).

Where the time goes, from the REST API's task instances and sacct:
  parse    the DAG visible after its file was written; a worker's parse of the DAG file
  submit   first submit task start -> last submit task end
  queue    SLURM Submit -> Start, mean and max over the run's SLURM jobs
  run      first SLURM Start -> last SLURM End (the node runners)
  results  last SLURM End -> the DAG run's end (waits noticing, result tasks, summary)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_jobforge.config import SlurmParams, load_config  # noqa: E402
from airflow_jobforge.dag.render import render_config  # noqa: E402
from airflow_jobforge.rundir import collect_results  # noqa: E402
from airflow_jobforge.rundir.batches import BatchSpec  # noqa: E402
from airflow_jobforge.slurm.client import SlurmClient  # noqa: E402
from airflow_jobforge.slurm.script import SubmitRequest  # noqa: E402
from airflow_jobforge.slurm.tags import run_key  # noqa: E402
from airflow_jobforge.slurm.transport import LocalTransport  # noqa: E402
from tests.deployment.conftest import STATE_DIR, Deployment, read_env  # noqa: E402

BENCH = Path("/tmp/jobforge-bench-scale")
PREFIX = "jobforge_scale_"
DAG_FILE_NAME = "jobforge_bench_scale.py"
DAG_FILE = '''"""Written by benchmarks/deployment_scale.py: its DAGs."""
from airflow_jobforge.dag.factory import load_dags

load_dags("{configs}/*.json", globals(), backend="slurm", output_dir="{out}",
          python="{python}", dag_id_prefix="{prefix}")
'''
PARSE_MS = re.compile(r'"dag_file_parse_ms":\s*(\d+)')
# The run's state is looked at this often; its end is the run's end_date. A look costs the
# api-server ~50 ms of CPU: at 0.5 s, ~15 CPU-s of a 160 s run went to watching it.
RUN_POLL_S = 3.0


def config(jobs: int, batch: int, processes: int = 2, cpus: int | None = None) -> dict:
    slurm: dict = {"walltime": "60"}
    if cpus:
        slurm["cpus_per_task"] = cpus
    return {
        "jobs": [{"name": f"j{i:06d}", "command": "true"} for i in range(jobs)],
        "submission_groups": [
            {
                "name": "g",
                "slurm": slurm,
                "batching": {"per_node_batch_size": batch, "num_processes": processes},
                "monitor": {"interval_s": 0},
            }
        ],
    }


def when(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def sacct_times(name_prefix: str) -> list[tuple[float, float, float]]:
    """(Submit, Start, End) of every SLURM job (array task) of the run."""
    out = subprocess.run(
        [
            "sacct",
            "-a",
            "-X",
            "-n",
            "-P",
            "--starttime=now-3hours",
            "--format=JobName%300,Submit,Start,End",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        name, *stamps = line.split("|")
        if name.startswith(name_prefix) and all(s[:1].isdigit() for s in stamps):
            rows.append(tuple(datetime.fromisoformat(s).timestamp() for s in stamps))
    return rows  # type: ignore[return-value]


def sdiag_submits(reset: bool = False) -> int:
    if reset:
        subprocess.run(["sdiag", "-r"], check=True, capture_output=True)
        return 0
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"REQUEST_SUBMIT_BATCH_JOB\s+\(\s*\d+\)\s+count:(\d+)", out)
    return int(found.group(1)) if found else 0


def deployment_run(client: Deployment, dag_id: str) -> dict:
    for run in client.get(f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]:
        if run["state"] in ("queued", "running"):  # an interrupted earlier benchmark's
            client.patch(
                f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}", json={"state": "failed"}
            )
    started = time.time()
    run_id = client.trigger(dag_id)
    state = client.wait_run(dag_id, run_id, timeout=3600, poll_s=RUN_POLL_S)
    run = client.run(dag_id, run_id)
    ended = when(run.get("end_date")) or time.time()
    tis = client.task_instances(dag_id, run_id)
    subs = [t for t in tis if ".submit_" in t["task_id"] and t["start_date"]]
    parse = []
    for ti in subs[:3]:
        found = PARSE_MS.search(client.task_log(dag_id, run_id, ti["task_id"]))
        if found:
            parse.append(int(found.group(1)) / 1000)
    slurm = sacct_times(f"jf-{run_key(dag_id, run_id)}.")
    return {
        "run_id": run_id,
        "state": state,
        "wall": ended - started,
        "run_end": ended,
        "started": started,
        "tasks": len(tis),
        "submit": (
            min(when(t["start_date"]) for t in subs),
            max(when(t["end_date"]) for t in subs if t["end_date"]),
        )
        if subs
        else None,
        "worker_parse_s": statistics.median(parse) if parse else None,
        "slurm": slurm,
    }


def no_airflow_run(config_file: Path) -> tuple[float, int]:
    out = BENCH / "out-no-airflow"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(REPO / ".venv/bin/jobforge"),
            "run",
            str(config_file),
            "--no-airflow",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return time.perf_counter() - started, done.returncode


def slurm_direct_run(config_file: Path) -> tuple[float, int]:
    """The same batches through SLURM without Airflow: each batch rendered as the factory
    renders it and sbatch'd as its submit task does, all at once from here, then waited for
    with the client's status query (one squeue) once a second. Wall from the first sbatch to
    the last job's end; returns it and the number of result records written. Separates what
    SLURM itself adds per allocation (on this cluster: the next pending job starts on
    slurmctld's 1-s background pass after the last one ends) from what Airflow adds."""
    batches = render_config(load_config(config_file), job_tasks=False).batches
    out = BENCH / "out-slurm-direct"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    client = SlurmClient(LocalTransport())
    tag = f"bench-direct-{os.getpid()}-{int(time.time())}"
    started = time.perf_counter()
    jobs = [
        client.submit(
            SubmitRequest(
                tag=f"{tag}-{batch.name}",
                batch=BatchSpec.from_dict(batch.spec),
                slurm=SlurmParams.model_validate(batch.slurm),
                output_dir=str(out),
                python=sys.executable,
                array=batch.array,
            ),
            adopt=False,
        )
        for batch in batches
    ]
    exit_files = {job.job_id: job.exit_file for job in jobs}
    while not all(status.terminal for status in client.status(exit_files, exit_files).values()):
        time.sleep(1.0)
    wall = time.perf_counter() - started
    return wall, len(collect_results(out))


def breakdown(result: dict, visible: float) -> str:
    lines = [f"  parse    DAG visible {visible:.1f} s after its file was written"]
    if result["worker_parse_s"] is not None:
        lines[-1] += f"; a worker parses the DAG file in {result['worker_parse_s']:.2f} s"
    if result["submit"]:
        first, last = result["submit"]
        lines.append(
            f"  submit   {first - result['started']:.1f} s after the trigger; submit tasks "
            f"span {last - first:.1f} s"
        )
    slurm = result["slurm"]
    if slurm:
        queue = [start - submit for submit, start, _ in slurm]
        first_start = min(start for _, start, _ in slurm)
        last_end = max(end for _, _, end in slurm)
        lines.append(
            f"  queue    {len(slurm)} SLURM jobs; Submit -> Start mean "
            f"{statistics.mean(queue):.1f} s, max {max(queue):.1f} s"
        )
        lines.append(f"  run      first Start -> last End {last_end - first_start:.1f} s")
        lines.append(
            f"  results  last End -> run end {result['run_end'] - last_end:.1f} s "
            "(sacct times are whole seconds)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="0: skip")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="deployment runs, each between two --no-airflow runs (median ratio)",
    )
    parser.add_argument(
        "--cpus",
        type=int,
        default=None,
        help="CPUs per batch (cpus_per_task); default SLURM's 1: two batches share the "
        "2-CPU node, while --no-airflow runs one batch at a time",
    )
    parser.add_argument("--one-job", type=int, default=10_000, help="submitted, counted; 0: skip")
    parser.add_argument("--one-job-run", type=int, default=1_000, help="run end to end; 0: skip")
    args = parser.parse_args()

    client = Deployment(read_env(STATE_DIR / "env"))
    folder = BENCH / "configs"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (BENCH / "out").mkdir(exist_ok=True)
    os.chmod(BENCH, 0o755)
    many = f"true_{args.jobs}_by_{args.batch}" + (f"_c{args.cpus}" if args.cpus else "")
    configs = {many: config(args.jobs, args.batch, cpus=args.cpus)} if args.jobs else {}
    if args.one_job:
        configs[f"one_job_{args.one_job}"] = config(args.one_job, 1)
        if args.one_job_run:
            configs[f"one_job_{args.one_job_run}"] = config(args.one_job_run, 1)
    for stem, data in configs.items():
        (folder / f"{stem}.json").write_text(json.dumps(data))

    written = time.perf_counter()
    client.write_dag(
        DAG_FILE_NAME,
        DAG_FILE.format(configs=folder, out=BENCH / "out", python=sys.executable, prefix=PREFIX),
    )
    visible = {}
    try:
        for stem in configs:
            client.wait_dag(PREFIX + stem, timeout=600)
            client.unpause(PREFIX + stem)
            visible[stem] = time.perf_counter() - written
        _measure(client, args, folder, many, visible)
    finally:
        client.remove_dag(DAG_FILE_NAME)  # its DAGs would be parsed by every test run


def _measure(
    client: Deployment, args: argparse.Namespace, folder: Path, many: str, visible: dict
) -> None:
    if args.jobs:
        _many(client, args, folder, many, visible)
    if args.one_job:
        _one_job(client, args, visible)


def _many(
    client: Deployment, args: argparse.Namespace, folder: Path, many: str, visible: dict
) -> None:
    """`--rounds` deployment runs, each between two `--no-airflow` runs: this machine's pace
    drifts (the same `--no-airflow` run took 90 to 210 s within two hours, and once 50 %
    longer than the deployment run just before it), so a deployment run is compared with
    the mean of the `--no-airflow` runs on either side of it, and several rounds give a
    median."""
    batches = -(-args.jobs // args.batch)
    print(
        f"{args.jobs:,} 'true' jobs in {batches} batches of {args.batch:,}, single-node "
        f"cluster ({os.cpu_count()} CPUs):"
    )
    ratios = []
    before, rc = no_airflow_run(folder / f"{many}.json")
    for round_ in range(1, args.rounds + 1):
        direct, records = slurm_direct_run(folder / f"{many}.json")
        result = deployment_run(client, PREFIX + many)
        after, rc_after = no_airflow_run(folder / f"{many}.json")
        plain = (before + after) / 2
        ratios.append(result["wall"] / plain)
        if args.rounds > 1:
            print(f" round {round_} of {args.rounds}:")
        print(
            f"  deployment (REST trigger -> run end): {result['wall']:.1f} s, run "
            f"{result['state']}, {result['tasks']} task instances   (goal < 240 s)\n"
            f"  jobforge run --no-airflow (same batches, one after another on this machine), "
            f"just before and just after it: {before:.1f} s and {after:.1f} s (exit "
            f"{rc}, {rc_after}), mean {plain:.1f} s\n"
            f"  ratio {ratios[-1]:.2f}x   (goal <= 1.5x)\n"
            f"  the same batches sbatch'd from a script, no Airflow, just before it: "
            f"{direct:.1f} s ({records:,} records), {direct / plain:.2f}x --no-airflow; "
            f"the deployment is {result['wall'] / direct:.2f}x that"
        )
        before, rc = after, rc_after
        print(breakdown(result, visible[many]))
    if args.rounds > 1:
        listed = ", ".join(f"{r:.2f}x" for r in ratios)
        print(f"  ratios {listed}; median {statistics.median(ratios):.2f}x   (goal <= 1.5x)")


def _one_job(client: Deployment, args: argparse.Namespace, visible: dict) -> None:
    """The one-job config submitted in full (its sbatch calls counted), then canceled: on
    the 2-CPU test cluster SLURM starts 2 one-job jobs a second, so 10,000 run ~85 minutes;
    the first `--one-job-run` of them run end to end instead, through a DAG of their own."""
    stem = f"one_job_{args.one_job}"
    dag_id = PREFIX + stem
    sdiag_submits(reset=True)
    started = time.time()
    run_id = client.trigger(dag_id)
    try:
        while True:
            tis = client.task_instances(dag_id, run_id)
            subs = [t for t in tis if ".submit_" in t["task_id"]]
            if subs and all(t["state"] == "success" for t in subs):
                break
            if any(t["state"] in ("failed", "upstream_failed") for t in subs):
                raise SystemExit(f"{dag_id}: a submit task failed")
            time.sleep(1)
        submitted = time.time() - started
    finally:
        client.patch(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})
        cancel_run(dag_id, run_id)
    print(
        f"{args.one_job:,} one-job jobs: {len(subs)} job arrays of <= 1,000 submitted "
        f"{submitted:.1f} s after the trigger, REQUEST_SUBMIT_BATCH_JOB={sdiag_submits()} "
        f"(sdiag, whole cluster; goal <= 10), {len(tis)} task instances; then canceled"
    )
    if not args.one_job_run:
        return
    stem = f"one_job_{args.one_job_run}"
    sdiag_submits(reset=True)
    result = deployment_run(client, PREFIX + stem)
    print(
        f"{args.one_job_run:,} one-job jobs end to end: {result['wall']:.1f} s, run "
        f"{result['state']}, {result['tasks']} task instances, "
        f"REQUEST_SUBMIT_BATCH_JOB={sdiag_submits()}"
    )
    print(breakdown(result, visible[stem]))


def cancel_run(dag_id: str, run_id: str) -> None:
    """scancel this run's SLURM jobs alone (others may share the cluster)."""
    prefix = f"jf-{run_key(dag_id, run_id)}."
    out = subprocess.run(
        ["squeue", "-h", "-o", "%A|%j"], capture_output=True, text=True, check=True
    ).stdout
    ids = sorted(
        {
            i
            for i, _, n in (line.partition("|") for line in out.splitlines())
            if n.startswith(prefix)
        }
    )
    if ids:
        subprocess.run(["scancel", *ids], check=False)


if __name__ == "__main__":
    main()
