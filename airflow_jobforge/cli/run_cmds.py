"""`jobforge plan` and `jobforge run`."""

from __future__ import annotations

import argparse

from airflow_jobforge.config import load_config
from airflow_jobforge.local_run import run_locally
from airflow_jobforge.planning import plan_batches


def cmd_plan(args: argparse.Namespace) -> int:
    config = load_config(args.config_file)
    plan = plan_batches(config)
    for batch in plan.batches:
        after = f" after {', '.join(batch.depends_on)}" if batch.depends_on else ""
        print(f"{batch.name}: {len(batch.jobs)} jobs{after}")
    print(f"{len(plan.batches)} batches for {len(config.jobs)} jobs")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config_file)
    summary = run_locally(config, args.output)
    print(summary)
    print(f"Results: {args.output}/results/*.jsonl; job output: {args.output}/job-output/")
    return 0 if summary.successful == summary.total else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="show how the jobs are grouped into batches")
    p.add_argument("config_file")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("run", help="run a configuration on this machine")
    p.add_argument("config_file")
    p.add_argument("--output", default="output", help="output directory (default: output)")
    p.set_defaults(func=cmd_run)
