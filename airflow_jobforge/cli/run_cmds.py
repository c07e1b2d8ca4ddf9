"""`jobforge plan` and `jobforge run`."""

from __future__ import annotations

import argparse
from pathlib import Path

from airflow_jobforge.config import load_config
from airflow_jobforge.dag.options import DagOptions
from airflow_jobforge.local.direct import run_locally
from airflow_jobforge.planning.planner import plan_batches
from airflow_jobforge.rundir import collect_results, results_table, tail_file


def cmd_plan(args: argparse.Namespace) -> int:
    config = load_config(args.config_file)
    plan = plan_batches(config)
    for batch in plan.batches:
        after = f" after {', '.join(batch.depends_on)}" if batch.depends_on else ""
        print(f"{batch.name}: {len(batch.jobs)} jobs{after}")
    print(f"{len(plan.batches)} batches for {len(config.jobs)} jobs")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
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
    p.add_argument("config_file", help="configuration (.json or .toml)")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("run", help="run a configuration's DAG once with embedded Airflow")
    p.add_argument("config_file", help="configuration (.json or .toml)")
    p.add_argument(
        "--backend",
        choices=["local", "slurm"],
        default="local",
        help="local: batches run on this machine; slurm: submitted with sbatch",
    )
    p.add_argument("--ssh-conn-id", help="reach SLURM through this Airflow SSH connection")
    p.add_argument("--slurm-conn-id", help="Airflow connection of type slurm")
    p.add_argument("--output", help="base output directory (a sub-directory per DAG run)")
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
        help="run the batches directly with the node runner, without Airflow",
    )
    p.set_defaults(func=cmd_run)
