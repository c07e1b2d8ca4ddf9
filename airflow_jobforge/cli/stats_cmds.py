"""`jobforge stats OUTPUT [--html PATH] [--json]`: a run's counts, efficiency and resource
use in the terminal, and optionally the self-contained HTML report."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from airflow_jobforge.errors import JobForgeError, SlurmError
from airflow_jobforge.results.report import write_report
from airflow_jobforge.results.stats import (
    format_stats,
    gather_stats,
    run_job_ids,
    stats_to_dict,
    write_efficiency,
)
from airflow_jobforge.rundir.manifest import resolve_run_dir
from airflow_jobforge.slurm.usage import BatchUsage


def fetch_usage(ids: list[str]) -> dict[str, BatchUsage]:
    """sacct on this machine, when there is one and there are SLURM ids to ask about. A
    failing sacct is said on stderr and the saved efficiency.json is used instead."""
    if not ids or shutil.which("sacct") is None:
        return {}
    from airflow_jobforge.slurm.client import SlurmClient
    from airflow_jobforge.slurm.transport import LocalTransport

    client = SlurmClient(LocalTransport())
    try:
        return client.usage(ids)
    except SlurmError as exc:
        print(f"jobforge: sacct failed, using the saved efficiency data: {exc}", file=sys.stderr)
        return {}
    finally:
        client.close()


def cmd_stats(args: argparse.Namespace) -> int:
    run_dir = resolve_run_dir(args.output)
    usage = fetch_usage(run_job_ids(run_dir))
    stats = gather_stats(run_dir, usage)
    if usage:
        try:
            write_efficiency(run_dir, stats.usage)
        except OSError as exc:  # someone else's run: show the figures all the same
            print(f"jobforge: efficiency data not saved: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps(stats_to_dict(stats, args.top), indent=1))
    else:
        print(format_stats(stats, args.top))
    if args.html:
        try:
            path = write_report(run_dir, stats, args.html)
        except OSError as exc:
            raise JobForgeError(f"cannot write the report: {exc}", file=args.html) from None
        print(f"\nHTML report: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats", help="a run's counts, CPU/memory efficiency (sacct) and resource use"
    )
    p.add_argument("output", help="a run directory, or an output directory (its newest run)")
    p.add_argument("--html", metavar="PATH", help="also write the self-contained HTML report")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--top", type=int, default=10, help="jobs listed by peak memory (default 10)")
    p.set_defaults(func=cmd_stats)
