"""`python -m airflow_jobforge.node run-batch BATCH.json --output DIR [--monitor-interval S]
[--array-index I]`, and `spark-worker ...`: one node's Spark worker, started by the runner
(as an srun step on every node of the allocation)."""

from __future__ import annotations

import argparse
import sys

from airflow_jobforge.node.runner import run_batch
from airflow_jobforge.node.spark import run_worker
from airflow_jobforge.rundir.batches import BatchSpec, array_task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_jobforge.node")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run-batch", help="run one batch's jobs on this node")
    run.add_argument("batch_file", help="batch JSON written by the submitter")
    run.add_argument("--output", required=True, help="output directory of the run")
    run.add_argument(
        "--num-processes",
        type=int,
        default=None,
        help="jobs at once (default: batch's, SLURM_CPUS_ON_NODE, CPU count)",
    )
    run.add_argument(
        "--monitor-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="resource monitor sampling interval, 0 = off (default: the batch's)",
    )
    run.add_argument(
        "--array-index",
        type=int,
        default=None,
        metavar="I",
        help="run only job I of the batch (one task of a SLURM job array)",
    )
    worker = sub.add_parser("spark-worker", help="run this node's Spark worker until stopped")
    worker.add_argument("--master", required=True, help="spark://host:port")
    worker.add_argument("--memory-mb", type=int, required=True)
    worker.add_argument("--cores", type=int, default=None, help="default: the node's CPUs")
    worker.add_argument("--scratch", required=True, help="node-local dir of the cluster")
    worker.add_argument("--logs", required=True, help="where worker-<host>.log goes")
    worker.add_argument("--spark-home", required=True)
    args = parser.parse_args(argv)
    if args.command == "spark-worker":
        return run_worker(
            args.master, args.memory_mb, args.scratch, args.logs, args.spark_home, args.cores
        )
    try:
        spec = BatchSpec.load(args.batch_file)
        if args.array_index is not None:
            spec = array_task(spec, args.array_index)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        print(f"{args.batch_file}: cannot read batch file: {exc}", file=sys.stderr)
        return 2
    return run_batch(spec, args.output, args.num_processes, args.monitor_interval)


if __name__ == "__main__":
    sys.exit(main())
