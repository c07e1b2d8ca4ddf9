"""Prints what a Spark cluster in an allocation costs on the test cluster, beside JADE's waits.

Needs the multi-node test cluster (scripts/slurm/start.sh --nodes 3, partition `multi`),
Java and pyspark (`make cluster`, `make venv`). For 1 and 2 nodes (`--nodes`), one batch of
one PySpark word count job (`--lines` lines of words, default 200,000) is submitted with
sbatch; then, from what the run dir and SLURM say:

- allocation -> ready: SLURM's StartTime of the job (1 s resolution) to the master reporting
  every worker alive (`spark/<batch>/cluster.json`);
- runner -> ready: the node runner's start of the cluster to the same moment (sub-second);
- the word count job's wall time (its record) and its application's (its event log);
- the stop: the last job's end to the cluster gone (workers, executors, master, scratch);
- the allocation's whole time.

JADE's baseline is its code, not a run (JADE runs Spark only inside a Singularity image, and
Debian has no Singularity/Apptainer): `jade/cli/run_spark_cluster.py` sleeps 15 s after
starting the workers before the user's script, 10 s after it, and the other nodes poll a
shutdown file every 60 s. Its start is at least 15 s plus the daemons' own start; its end
keeps the allocation at least 10 s after the job, the other nodes up to 60 s more.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_jobforge.config import SlurmParams  # noqa: E402
from airflow_jobforge.rundir import collect_results  # noqa: E402
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec, SparkSpec  # noqa: E402
from airflow_jobforge.rundir.spark import read_cluster_infos, read_spark_apps  # noqa: E402
from airflow_jobforge.slurm.client import SlurmClient  # noqa: E402
from airflow_jobforge.slurm.script import SubmitRequest  # noqa: E402
from airflow_jobforge.slurm.transport import LocalTransport  # noqa: E402

JADE_BEFORE_SCRIPT_S = 15
JADE_AFTER_SCRIPT_S = 10
JADE_WORKER_POLL_S = 60
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
WORDCOUNT = """\
import json, sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("wordcount").getOrCreate()
lines = spark.sparkContext.textFile(sys.argv[1], minPartitions=4)
counts = dict(lines.flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b)
              .collect())
json.dump(counts, open(sys.argv[2], "w"))
spark.stop()
"""


def scontrol_field(job_id: str, name: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=False
    ).stdout
    for word in out.split():
        if word.startswith(f"{name}="):
            return word.split("=", 1)[1]
    return ""


def wait_done(job_id: str, exit_file: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not Path(exit_file).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} did not end in {timeout:g} s")
        time.sleep(0.5)


def one_run(client: SlurmClient, base: Path, nodes: int, lines: int, partition: str) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"spark{nodes}-", dir=base))
    words = out / "words.txt"
    with words.open("w") as handle:
        for i in range(lines):
            handle.write(" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 5)))
            handle.write("\n")
    script = out / "wordcount.py"
    script.write_text(WORDCOUNT)
    request = SubmitRequest(
        tag=f"bench-spark-{uuid.uuid4().hex[:8]}",
        batch=BatchSpec(
            "spark-0000",
            (JobSpec("wordcount", f"python {script} {words} {out}/counts.json"),),
            num_processes=1,
            spark=SparkSpec(),
        ),
        slurm=SlurmParams(partition=partition, nodes=nodes, mem="3G", walltime="15"),
        output_dir=str(out),
        python=sys.executable,
    )
    job = client.submit(request)
    wait_done(job.job_id, job.exit_file)
    start = datetime.fromisoformat(scontrol_field(job.job_id, "StartTime")).timestamp()
    end = datetime.fromisoformat(scontrol_field(job.job_id, "EndTime")).timestamp()
    (info,) = read_cluster_infos(out)
    record = collect_results(out)["wordcount"]
    (app,) = read_spark_apps(out)
    if not record.succeeded:
        raise SystemExit(f"the word count failed: {record}")
    return {
        "nodes": nodes,
        "workers": info.workers_alive,
        "alloc_to_ready_s": info.ready - start,
        "runner_to_ready_s": info.start_s,
        "job_s": record.exec_time_s,
        "app_s": app.duration_s or 0.0,
        "stop_s": (info.stopped or record.end) - record.end,
        "allocation_s": end - start,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--partition", default="multi")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="jobforge-bench-spark-"))
    base.chmod(0o1777)
    client = SlurmClient(LocalTransport())
    rows = [one_run(client, base, n, args.lines, args.partition) for n in args.nodes]
    print(
        f"PySpark word count of {args.lines:,} lines, one job per batch, partition {args.partition}"
    )
    print(
        f"{'nodes':>5} {'workers':>7} {'alloc->ready':>13} {'runner->ready':>14} "
        f"{'job':>7} {'app':>7} {'stop':>6} {'allocation':>11}   JADE (by its code)"
    )
    for r in rows:
        jade_start = JADE_BEFORE_SCRIPT_S
        jade_alloc = jade_start + r["job_s"] + JADE_AFTER_SCRIPT_S
        print(
            f"{r['nodes']:>5} {r['workers']:>7} {r['alloc_to_ready_s']:>12.2f}s "
            f"{r['runner_to_ready_s']:>13.2f}s {r['job_s']:>6.2f}s {r['app_s']:>6.2f}s "
            f"{r['stop_s']:>5.2f}s {r['allocation_s']:>10.0f}s   start >= {jade_start} s "
            f"(x{jade_start / r['runner_to_ready_s']:.1f}), allocation >= {jade_alloc:.0f} s"
            + (f" + up to {JADE_WORKER_POLL_S} s on other nodes" if r["nodes"] > 1 else "")
        )
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
