"""`jobforge results show|resubmit`, `jobforge events` and `jobforge cancel`: after the run.

Each takes OUTPUT: a run directory, or an output root whose newest run is meant. `results
show` takes a pipeline's run directory too (each stage, then the totals); the others act on
one run, so of a pipeline they take a stage's directory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from airflow_jobforge.config import dump_config, load_config
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.results.resubmit import CATEGORIES, DEFAULT_CATEGORIES, resubmit_config
from airflow_jobforge.results.show import (
    TableOptions,
    all_succeeded,
    load_pipeline,
    load_run,
    parse_states,
    pipeline_json,
    pipeline_text,
    run_text,
    select,
    show_json,
)
from airflow_jobforge.rundir.events import EVENT_TYPES, read_events
from airflow_jobforge.rundir.pipeline import (
    is_pipeline_run_dir,
    resolve_results_dir,
    single_run_dir,
)

OUTPUT_HELP = "a run directory, a pipeline's run directory, or an output directory (its newest run)"
ONE_RUN_HELP = "a run directory (a pipeline stage's), or an output directory (its newest run)"


def cmd_show(args: argparse.Namespace) -> int:
    run_dir = resolve_results_dir(args.output)
    options = TableOptions(
        states=parse_states(args.status),
        max_rows=None if args.all else args.max_rows,
        max_tails=args.tails,
        tail_lines=args.tail_lines,
    )
    if is_pipeline_run_dir(run_dir):
        pipeline = load_pipeline(run_dir)
        if args.json:
            write_json(pipeline_json(pipeline, options))
        else:
            print(pipeline_text(pipeline, options))
        return 0 if pipeline.succeeded() else 1
    run = load_run(run_dir)
    if args.json:
        names = select(run, options.states)
        write_json(show_json(run, names, max_tails=args.tails, tail_lines=args.tail_lines))
    else:
        print(run_text(run, options))
    return 0 if all_succeeded(run.summary()) else 1


def write_json(document: dict[str, Any]) -> None:
    # One write: json.dump to a stream writes every token apart (18 s for 100,000 jobs).
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")


def cmd_resubmit(args: argparse.Namespace) -> int:
    run_dir = single_run_dir(args.output)
    run = load_run(run_dir)
    config_file = args.config or (run.manifest.config_file if run.manifest else None)
    if not config_file:
        raise JobForgeError(
            f"{run_dir}: the run names no configuration file (no config_file in run.json); "
            "give the original one with --config"
        )
    if not Path(config_file).exists():
        raise JobForgeError(
            "the run's configuration file is gone; give it with --config", file=config_file
        )
    categories = [c for c in CATEGORIES if getattr(args, c)] or list(DEFAULT_CATEGORIES)
    resubmission = resubmit_config(
        load_config(config_file),
        run.records,
        run.names,
        categories,
        args.set or (),
        config_file=config_file,
    )
    for note in resubmission.notes:
        print(f"note: {note}", file=sys.stderr)
    if resubmission.total == 0:
        print(
            f"Nothing to resubmit: no job of {run_dir} is {' or '.join(categories)}; "
            f"{args.config_file} not written"
        )
        return 0
    dump_config(resubmission.config, args.config_file)
    print(f"{resubmission.describe()} -> {args.config_file}")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    types = [t.strip() for value in args.type or () for t in value.split(",") if t.strip()]
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise JobForgeError(
            f"unknown event type {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(EVENT_TYPES)}"
        )
    run_dir = single_run_dir(args.output)
    wanted = set(types)
    shown = 0
    for event in read_events(run_dir):
        if wanted and event.type not in wanted:
            continue
        if args.job and event.job != args.job:
            continue
        if args.batch and event.batch != args.batch:
            continue
        print(event.to_json() if args.json else event.line())
        shown += 1
    if not shown and not args.json:
        print(f"No events in {run_dir}", file=sys.stderr)
    return 0


def default_backend() -> str:
    return "slurm" if shutil.which("squeue") else "local"


def cmd_cancel(args: argparse.Namespace) -> int:
    from airflow_jobforge.results.cancel import cancel_run

    run_dir = single_run_dir(args.output)
    backend = args.backend or default_backend()
    if backend == "slurm":
        from airflow_jobforge.slurm.client import SlurmClient
        from airflow_jobforge.slurm.transport import LocalTransport

        client = SlurmClient(LocalTransport())
    else:
        from airflow_jobforge.local.backend import LocalClient

        client = LocalClient(args.state_dir)
    try:
        report = cancel_run(run_dir, client, wait_s=args.wait)
    finally:
        client.close()
    print(f"Run: {run_dir}")
    for line in report.lines():
        print(line)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    results = sub.add_parser("results", help="a run's results: show them, resubmit what failed")
    rsub = results.add_subparsers(dest="results_command", required=True, metavar="COMMAND")

    p = rsub.add_parser(
        "show",
        help="JADE's counts and a table of jobs (exit code 0 only when every job succeeded)",
        description="Counts and a table of a run's jobs. A job without a result record counts "
        "as missing; a rerun's record wins over the first one. Large runs list only the jobs "
        "that did not succeed; --all lists every job. Of a pipeline run: each stage (its "
        "state and table), then the totals; exit code 0 only when every stage succeeded.",
    )
    p.add_argument("output", metavar="OUTPUT", help=OUTPUT_HELP)
    p.add_argument(
        "--status",
        action="append",
        metavar="STATES",
        help="only jobs in these states, comma-separated: ok, failed, canceled, missing",
    )
    p.add_argument("--json", action="store_true", help="one JSON document: counts and jobs")
    p.add_argument("--all", action="store_true", help="list every job, however many")
    p.add_argument(
        "--max-rows", type=int, default=40, help="rows of the table without --all (default 40)"
    )
    p.add_argument(
        "--tails", type=int, default=5, help="failed jobs whose stderr tail is shown (default 5)"
    )
    p.add_argument(
        "--tail-lines", type=int, default=5, help="lines of each stderr tail (default 5)"
    )
    p.set_defaults(func=cmd_show)

    p = rsub.add_parser(
        "resubmit",
        help="a new config holding the run's jobs that did not succeed",
        description="Write a configuration holding the run's failed and/or missing and/or "
        "canceled jobs (default: failed and missing). Blockers that are not resubmitted are "
        "dropped from blocked_by. Nothing to resubmit: says so, writes nothing, exit code 0.",
    )
    p.add_argument("output", metavar="OUTPUT", help=ONE_RUN_HELP)
    p.add_argument("--failed", action="store_true", help="jobs that ran and exited non-zero")
    p.add_argument(
        "--missing", action="store_true", help="jobs that left no result (killed, walltime)"
    )
    p.add_argument("--canceled", action="store_true", help="jobs that never ran")
    p.add_argument(
        "--set",
        action="append",
        metavar="GROUP.SECTION.KEY=VALUE",
        help="change a submission group, e.g. cpu.slurm.mem=16G, cpu.slurm.walltime=8:00:00, "
        "cpu.batching.per_node_batch_size=10, cpu.retry.max_attempts=3 (repeatable)",
    )
    p.add_argument(
        "--config", help="the run's original configuration (default: run.json's config_file)"
    )
    p.add_argument(
        "-c", "--config-file", required=True, metavar="NEW", help="new config (.json or .toml)"
    )
    p.set_defaults(func=cmd_resubmit)

    p = sub.add_parser("events", help="a run's event log, in time order")
    p.add_argument("output", metavar="OUTPUT", help=ONE_RUN_HELP)
    p.add_argument(
        "--type",
        action="append",
        metavar="TYPE",
        help=f"only these types (repeatable, comma-separated): {', '.join(EVENT_TYPES)}",
    )
    p.add_argument("--job", help="only events of this job")
    p.add_argument("--batch", help="only events of this batch")
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser(
        "cancel",
        help="cancel every SLURM job of a run and record its jobs canceled/missing",
        description="Cancel every queued or running batch of a run (found by its run key in "
        "the job names), wait for them to leave the queue, and give every job without a "
        "result record one (canceled, or missing when it had started). Runs where the run "
        "directory and the SLURM commands are: over SSH, run it on the cluster's login node. "
        "Marking the Airflow DAG run failed is done in the Airflow UI.",
    )
    p.add_argument("output", metavar="OUTPUT_OR_RUN", help=ONE_RUN_HELP)
    p.add_argument(
        "--backend",
        choices=["slurm", "local"],
        help="slurm (default when squeue is on PATH) or local (batches run on this machine)",
    )
    p.add_argument(
        "--state-dir",
        help="the local backend's state dir (default $JOBFORGE_LOCAL_STATE or "
        "/tmp/jobforge-local-$UID)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=30.0,
        help="seconds to wait for the batches to leave the queue (default 30)",
    )
    p.set_defaults(func=cmd_cancel)
