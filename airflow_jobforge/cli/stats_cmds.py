"""`jobforge stats OUTPUT [--html PATH] [--json]`: a run's counts, efficiency and resource
use in the terminal, and optionally the self-contained HTML report. Of a pipeline run: each
stage's, then the totals; `--html` writes an index and each stage's report."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from airflow_jobforge.errors import JobForgeError, SlurmError
from airflow_jobforge.results.report import write_pipeline_reports, write_report
from airflow_jobforge.results.stats import (
    format_pipeline_stats,
    format_stats,
    gather_pipeline_stats,
    gather_stats,
    pipeline_job_ids,
    pipeline_stats_to_dict,
    run_job_ids,
    stats_to_dict,
    write_efficiency,
)
from airflow_jobforge.rundir.pipeline import is_pipeline_run_dir, resolve_results_dir
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
    run_dir = resolve_results_dir(args.output)
    if is_pipeline_run_dir(run_dir):
        return pipeline_stats(args, run_dir)
    usage = fetch_usage(run_job_ids(run_dir))
    stats = gather_stats(run_dir, usage)
    if usage:
        save_efficiency(run_dir, stats.usage)
    if args.json:
        print(json.dumps(stats_to_dict(stats, args.top), indent=1))
    else:
        print(format_stats(stats, args.top))
    if args.html:
        path = html_report(lambda: write_report(run_dir, stats, args.html), args.html)
        print(f"\nHTML report: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def pipeline_stats(args: argparse.Namespace, run_dir: Path) -> int:
    """Every stage's stats (one sacct for them all), then the totals. `--html PATH`: the
    index at PATH, each stage's report beside it (`<PATH stem>.<stage>.html`)."""
    usage = fetch_usage(pipeline_job_ids(run_dir))
    stats = gather_pipeline_stats(run_dir, usage)
    if usage:
        for one in stats.gathered():
            save_efficiency(one.run_dir, one.usage)
    if args.json:
        print(json.dumps(pipeline_stats_to_dict(stats, args.top), indent=1))
    else:
        print(format_pipeline_stats(stats, args.top))
    if args.html:
        path = html_report(lambda: write_pipeline_reports(stats, args.html), args.html)
        print(f"\nHTML report: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def save_efficiency(run_dir: Path, usage: dict[str, BatchUsage]) -> None:
    try:
        write_efficiency(run_dir, usage)
    except OSError as exc:  # someone else's run: show the figures all the same
        print(f"jobforge: efficiency data not saved: {exc}", file=sys.stderr)


def html_report(write: Callable[[], Path], where: str) -> Path:
    try:
        return write()
    except OSError as exc:
        raise JobForgeError(f"cannot write the report: {exc}", file=where) from None


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats", help="a run's counts, CPU/memory efficiency (sacct) and resource use"
    )
    p.add_argument(
        "output",
        help="a run directory, a pipeline's run directory, or an output directory (its newest run)",
    )
    p.add_argument("--html", metavar="PATH", help="also write the self-contained HTML report")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--top", type=int, default=10, help="jobs listed by peak memory (default 10)")
    p.set_defaults(func=cmd_stats)
