"""`jobforge plan` and `jobforge run`, of a config or a pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from airflow_jobforge.config import load_config
from airflow_jobforge.config.models import JobConfiguration
from airflow_jobforge.config.pipeline import (
    apply_stage_overrides,
    is_pipeline_file,
    load_pipeline,
    load_stage_config,
    resolve_config_file,
)
from airflow_jobforge.dag.options import DagOptions
from airflow_jobforge.local.direct import run_locally
from airflow_jobforge.local.pipeline import run_pipeline_locally
from airflow_jobforge.planning.planner import plan_batches
from airflow_jobforge.results.show import TableOptions, pipeline_text
from airflow_jobforge.results.show import load_pipeline as load_pipeline_run
from airflow_jobforge.rundir import collect_results, results_table, tail_file


def cmd_plan(args: argparse.Namespace) -> int:
    if is_pipeline_file(args.config_file):
        return _plan_pipeline(args.config_file)
    _print_plan(load_config(args.config_file))
    return 0


def _print_plan(config: JobConfiguration, indent: str = "") -> None:
    plan = plan_batches(config)
    for batch in plan.batches:
        after = f" after {', '.join(batch.depends_on)}" if batch.depends_on else ""
        print(f"{indent}{batch.name}: {len(batch.jobs)} jobs{after}")
    print(f"{indent}{len(plan.batches)} batches for {len(config.jobs)} jobs")


def _plan_pipeline(pipeline_file: str) -> int:
    """Each static stage's batches, as its config and overrides give them; a generated
    stage's exist only once its command ran."""
    pipeline, notes = load_pipeline(pipeline_file)
    for note in notes:
        print(f"note: not carried over: {note}", file=sys.stderr)
    count = len(pipeline.stages)
    for number, stage in enumerate(pipeline.stages, 1):
        if stage.command is not None:
            print(
                f"stage {number}/{count} {stage.name}: generated at run time by "
                f"`{stage.command}` (writes {stage.config_output_path})"
            )
            continue
        path = resolve_config_file(pipeline_file, stage)
        config = load_stage_config(path, stage=stage.name)[0]
        config = apply_stage_overrides(
            config, stage.overrides, stage=stage.name, file=pipeline_file
        )
        print(f"stage {number}/{count} {stage.name}: config file {path}")
        _print_plan(config, indent="  ")
    return 0


def _run_pipeline_here(args: argparse.Namespace) -> int:
    """`--no-airflow` of a pipeline: the stages' results as `results show` prints them."""
    pipeline, notes = load_pipeline(args.config_file)
    for note in notes:
        print(f"note: not carried over: {note}", file=sys.stderr)
    run = run_pipeline_locally(pipeline, args.config_file, Path(args.output or "output"))
    results = load_pipeline_run(run.run_dir)
    print()
    print(pipeline_text(results, TableOptions()))
    print(f"Results: `jobforge results show {run.run_dir}`")
    return 0 if results.succeeded() else 1


def cmd_run(args: argparse.Namespace) -> int:
    if args.no_airflow and is_pipeline_file(args.config_file):
        return _run_pipeline_here(args)
    if args.no_airflow:
        config = load_config(args.config_file)
        output = Path(args.output or "output")
        summary = run_locally(config, output, config_file=args.config_file)
        print(
            results_table(
                [job.name for job in config.jobs],
                collect_results(output),
                no_record_reason=summary.no_record_reason,
                stderr_tail=lambda name: tail_file(output / "job-output" / f"{name}.err"),
            )
        )
        print(f"\n{summary}")
        print(f"Results: {output}/results/*.jsonl; job output: {output}/job-output/")
        return 0 if summary.successful == summary.total else 1
    from airflow_jobforge.embedded.report import format_report
    from airflow_jobforge.embedded.run import parse_params, run

    options = DagOptions(
        backend=args.backend,
        ssh_conn_id=args.ssh_conn_id,
        slurm_conn_id=args.slurm_conn_id,
        output_dir=args.output,
        job_tasks={"auto": None, "yes": True, "no": False}[args.job_tasks],
        python=args.python,
        pythonpath=args.pythonpath,
    )
    result = run(
        args.config_file,
        options,
        params=parse_params(args.param or []),
        airflow_home=args.airflow_home,
        verbose=args.verbose,
    )
    print(format_report(result))
    summary = result.summary
    return 0 if result.state == "success" and summary.successful == summary.total else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="show how the jobs are grouped into batches")
    p.add_argument("config_file", help="configuration or pipeline (.json or .toml)")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser(
        "run", help="run a configuration's or a pipeline's DAG once with embedded Airflow"
    )
    p.add_argument("config_file", help="configuration or pipeline (.json or .toml)")
    p.add_argument(
        "--backend",
        choices=["local", "slurm"],
        default="local",
        help="local: batches run on this machine; slurm: submitted with sbatch",
    )
    p.add_argument("--ssh-conn-id", help="reach SLURM through this Airflow SSH connection")
    p.add_argument("--slurm-conn-id", help="Airflow connection of type slurm")
    p.add_argument(
        "-o",
        "--output",
        help="base output directory (a sub-directory per DAG run, and per --no-airflow "
        "pipeline run)",
    )
    p.add_argument("--airflow-home", help="AIRFLOW_HOME (default .jobforge/airflow)")
    p.add_argument(
        "--job-tasks",
        choices=["auto", "yes", "no"],
        default="auto",
        help="one Airflow task per job (auto: configs of <= 100 jobs)",
    )
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="DAG run param: jobs=a,b*  partition=...  account=...  walltime=...  "
        "rerun_of=RUN_ID  rerun=failed,missing,canceled",
    )
    p.add_argument("--python", help="python on the nodes (default: this one; SSH: python3)")
    p.add_argument("--pythonpath", help="PYTHONPATH on the nodes")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="Airflow's logs and warnings on the console (default: in the task log files)",
    )
    p.add_argument(
        "--no-airflow",
        action="store_true",
        help="run the batches directly with the node runner, without Airflow (a pipeline: "
        "stage by stage, into OUTPUT/nodag__<UTC time>/)",
    )
    p.set_defaults(func=cmd_run)
