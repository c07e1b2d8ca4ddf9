"""`python -m airflow_jobforge.node run-batch BATCH.json --output DIR [--monitor-interval S]
[--array-index I]`"""

from __future__ import annotations

import argparse
import sys

from airflow_jobforge.node.runner import run_batch
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
    args = parser.parse_args(argv)
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
