"""`jobforge config ...` and `jobforge auto-config`."""

from __future__ import annotations

import argparse
import fnmatch
import json
import random
import sys
from typing import Any

from airflow_jobforge.config import (
    BatchingParams,
    ContainerParams,
    Job,
    JobConfiguration,
    SlurmParams,
    SubmissionGroup,
    dump_config,
    ensure_valid,
    load_config,
    read_data,
)
from airflow_jobforge.config.jade import import_jade
from airflow_jobforge.errors import ConfigError, JobForgeError, Problem
from airflow_jobforge.extensions.generic_command import jobs_from_commands, read_commands
from airflow_jobforge.extensions.registry import Registry


def _save(config: JobConfiguration, path: str, file_for_errors: str) -> None:
    ensure_valid(config, file=file_for_errors)
    dump_config(config, path)


def cmd_create(args: argparse.Namespace) -> int:
    try:
        commands = read_commands(args.commands_file)
    except OSError as exc:
        raise JobForgeError(f"cannot read: {exc.strerror}", file=args.commands_file) from None
    if args.shuffle:
        random.Random(args.seed).shuffle(commands)
    jobs = jobs_from_commands(
        commands,
        group=args.group,
        minutes_per_job=args.minutes_per_job,
        cancel_on_blocking_job_failure=args.cancel_on_blocking_job_failure,
        append_output_dir=args.append_output_dir,
    )
    groups = [SubmissionGroup(name=args.group)] if args.group else []
    config = JobConfiguration(jobs=jobs, submission_groups=groups)
    _save(config, args.config_file, args.commands_file)
    print(f"Created configuration with {len(jobs)} jobs in {args.config_file}")
    return 0


def cmd_auto_config(args: argparse.Namespace) -> int:
    cli = Registry().get_extension_class(args.extension, "cli")
    post = None
    if args.job_post_process_config:
        post = read_data(args.job_post_process_config)
    config = cli.auto_config(*args.inputs, job_post_process_config=post)
    _save(config, args.config_file, ", ".join(args.inputs))
    print(f"Created configuration with {len(config.jobs)} jobs in {args.config_file}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    config = load_config(args.config_file)
    rows = [("#", "name", "group", "blocked_by", "minutes", "command")]
    for i, job in enumerate(config.jobs):
        command = job.command if len(job.command) <= 60 else job.command[:57] + "..."
        blocked = ",".join(job.blocked_by)
        rows.append(
            (
                str(i),
                job.name,
                job.submission_group or "",
                blocked[:30],
                "" if job.estimated_run_minutes is None else f"{job.estimated_run_minutes:g}",
                command,
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(
        f"\n{len(config.jobs)} jobs in {len(config.submission_groups)} submission group(s): "
        + ", ".join(g.name for g in config.submission_groups)
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.config_files:
        try:
            config = load_config(path)
        except JobForgeError as exc:
            print(exc.one_line(), file=sys.stderr)
            failed = True
            continue
        print(f"{path}: OK, {len(config.jobs)} jobs, {len(config.submission_groups)} group(s)")
    return 2 if failed else 0


def _parse_indices(specs: list[str], n: int) -> set[int]:
    chosen: set[int] = set()
    for spec in specs:
        try:
            if "-" in spec:
                lo, hi = spec.split("-", 1)
                chosen.update(range(int(lo), int(hi) + 1))
            else:
                chosen.add(int(spec))
        except ValueError:
            raise JobForgeError(f"{spec!r} is not an index or a range like 2-5") from None
    out_of_range = sorted(i for i in chosen if not 0 <= i < n)
    if out_of_range:
        raise JobForgeError(f"indices out of range 0-{n - 1}: {out_of_range[:10]}")
    return chosen


def cmd_filter(args: argparse.Namespace) -> int:
    config = load_config(args.config_file)
    keep = list(range(len(config.jobs)))
    if args.indices:
        chosen = _parse_indices(args.indices, len(config.jobs))
        keep = [i for i in keep if i in chosen]
    for expr in args.field or []:
        key, sep, value = expr.partition("=")
        if not sep:
            raise JobForgeError(f"filter {expr!r} is not of the form field=value")
        if key not in Job.model_fields:
            raise JobForgeError(f"jobs have no field {key!r}")
        keep = [
            i for i in keep if fnmatch.fnmatchcase(_as_text(getattr(config.jobs[i], key)), value)
        ]
    kept = [config.jobs[i] for i in keep]
    names = {j.name for j in kept}
    dropped_blockers = sorted({b for j in kept for b in j.blocked_by if b not in names})
    kept = [
        j.model_copy(update={"blocked_by": tuple(b for b in j.blocked_by if b in names)})
        for j in kept
    ]
    new = config.model_copy(update={"jobs": kept})
    _save(new, args.output or args.config_file, args.config_file)
    print(f"Kept {len(kept)} of {len(config.jobs)} jobs in {args.output or args.config_file}")
    if dropped_blockers:
        print(
            f"Removed references to {len(dropped_blockers)} filtered-out blocker(s): "
            + ", ".join(dropped_blockers[:10]),
            file=sys.stderr,
        )
    return 0


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def cmd_assign_blocked_by(args: argparse.Namespace) -> int:
    config = load_config(args.config_file)
    by_name = config.jobs_by_name()
    unknown = [n for n in [args.job, *args.blockers] if n not in by_name]
    if unknown:
        raise ConfigError(
            [Problem(f"job {n!r}", "not in the configuration") for n in unknown],
            file=args.config_file,
        )
    blockers = args.blockers or [j.name for j in config.jobs if j.name != args.job]
    jobs = [
        j.model_copy(update={"blocked_by": tuple(dict.fromkeys([*j.blocked_by, *blockers]))})
        if j.name == args.job
        else j
        for j in config.jobs
    ]
    _save(
        config.model_copy(update={"jobs": jobs}), args.output or args.config_file, args.config_file
    )
    print(f"Job {args.job!r} is now blocked by {len(blockers)} job(s)")
    return 0


def cmd_add_group(args: argparse.Namespace) -> int:
    config = load_config(args.config_file)
    slurm = {
        k: getattr(args, k)
        for k in SlurmParams.model_fields
        if k != "extra" and getattr(args, k, None) is not None
    }
    slurm["extra"] = tuple(args.sbatch_option or ())
    batching = {
        k: getattr(args, k)
        for k in BatchingParams.model_fields
        if getattr(args, k, None) is not None
    }
    data: dict[str, Any] = {"name": args.name, "slurm": slurm, "batching": batching}
    if args.container_image:
        data["container"] = ContainerParams(image=args.container_image)
    try:
        group = SubmissionGroup.model_validate(data)
    except ValueError as exc:
        raise JobForgeError(str(exc).replace("\n", "; "), file=args.config_file) from None
    groups = [*config.submission_groups, group]
    jobs = config.jobs
    if args.jobs:
        wanted = set(args.jobs)
        jobs = [
            j.model_copy(update={"submission_group": group.name})
            if any(fnmatch.fnmatchcase(j.name, p) for p in wanted)
            else j
            for j in jobs
        ]
    new = config.model_copy(update={"submission_groups": groups, "jobs": jobs})
    _save(new, args.output or args.config_file, args.config_file)
    print(f"Added submission group {group.name!r}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    schema = JobConfiguration.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "airflow-jobforge job configuration"
    print(json.dumps(schema, indent=2))
    return 0


def cmd_import_jade(args: argparse.Namespace) -> int:
    config, notes = import_jade(read_data(args.jade_config), file=args.jade_config)
    dump_config(config, args.output)
    for note in notes:
        print(f"{args.jade_config}: not carried over: {note}", file=sys.stderr)
    print(
        f"Imported {len(config.jobs)} jobs and {len(config.submission_groups)} group(s) "
        f"into {args.output}"
    )
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="create, inspect and edit job configurations")
    csub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")

    p = csub.add_parser("create", help="one job per line of a commands file")
    p.add_argument("commands_file", help="one command per line; blank lines and # comments skipped")
    p.add_argument("-c", "--config-file", default="config.json", help="output (.json or .toml)")
    p.add_argument("--group", help="put every job in this submission group")
    p.add_argument("--minutes-per-job", type=float, help="estimated_run_minutes of every job")
    p.add_argument(
        "--cancel-on-blocking-job-failure",
        action="store_true",
        help="set cancel_on_blocking_job_failure on every job",
    )
    p.add_argument(
        "--append-output-dir",
        metavar="DIR",
        help="append DIR as the last argument of every command",
    )
    p.add_argument("--shuffle", action="store_true", help="shuffle the commands")
    p.add_argument("--seed", type=int, default=None, help="seed for --shuffle")
    p.set_defaults(func=cmd_create)

    p = csub.add_parser("show", help="print the jobs as a table")
    p.add_argument("config_file", help="configuration (.json or .toml)")
    p.set_defaults(func=cmd_show)

    p = csub.add_parser("validate", help="report every problem of the configs (exit 2 if any)")
    p.add_argument("config_files", nargs="+", help="configurations (.json or .toml)")
    p.set_defaults(func=cmd_validate)

    p = csub.add_parser("filter", help="keep jobs by index/range and/or field=value (glob)")
    p.add_argument("config_file", help="configuration (.json or .toml)")
    p.add_argument("indices", nargs="*", help="0-based indices or ranges like 3-9")
    p.add_argument(
        "-f",
        "--field",
        action="append",
        metavar="FIELD=VALUE",
        help="keep jobs whose FIELD matches the glob VALUE (repeatable: all must match)",
    )
    p.add_argument("-o", "--output", help="write here instead of in place")
    p.set_defaults(func=cmd_filter)

    p = csub.add_parser(
        "assign-blocked-by", help="make JOB blocked by BLOCKERS (all other jobs if none given)"
    )
    p.add_argument("config_file", help="configuration (.json or .toml)")
    p.add_argument("job", help="the job to block")
    p.add_argument("blockers", nargs="*", help="names of the jobs it waits for")
    p.add_argument("-o", "--output", help="write here instead of in place")
    p.set_defaults(func=cmd_assign_blocked_by)

    p = csub.add_parser("add-group", help="add a submission group")
    p.add_argument("config_file", help="configuration (.json or .toml)")
    p.add_argument("name", help="the new group's name")
    for key in (
        "account",
        "partition",
        "qos",
        "reservation",
        "walltime",
        "mem",
        "tmp",
        "gres",
        "constraint",
    ):
        p.add_argument(f"--{key}", help=f"slurm.{key}")
    for key in ("nodes", "ntasks", "ntasks_per_node", "cpus_per_task"):
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=int, help=f"slurm.{key}")
    p.add_argument(
        "--sbatch-option",
        action="append",
        metavar="--KEY=VALUE",
        help="extra sbatch option (repeatable)",
    )
    p.add_argument("--per-node-batch-size", type=int, help="batching.per_node_batch_size")
    p.add_argument("--num-processes", type=int, help="batching.num_processes")
    p.add_argument(
        "--time-based-batching",
        action="store_true",
        default=None,
        help="batching.time_based_batching",
    )
    p.add_argument(
        "--no-try-add-blocked-jobs",
        dest="try_add_blocked_jobs",
        action="store_false",
        default=None,
        help="batching.try_add_blocked_jobs false",
    )
    p.add_argument("--container-image", help="container.image (runtime apptainer)")
    p.add_argument(
        "--jobs", nargs="+", metavar="NAME_OR_GLOB", help="move these jobs into the new group"
    )
    p.add_argument("-o", "--output", help="write here instead of in place")
    p.set_defaults(func=cmd_add_group)

    p = csub.add_parser("schema", help="print the JSON Schema of configuration files")
    p.set_defaults(func=cmd_schema)

    p = csub.add_parser("import-jade", help="convert a JADE (nrel-jade v0.2.0) config")
    p.add_argument("jade_config", help="JADE config.json")
    p.add_argument("-o", "--output", required=True, help="new config (.json or .toml)")
    p.set_defaults(func=cmd_import_jade)

    p = sub.add_parser("auto-config", help="create a config with an extension's auto_config")
    p.add_argument("extension", help="a registered extension (jobforge extensions list)")
    p.add_argument("inputs", nargs="+", help="what the extension's auto_config takes")
    p.add_argument("-c", "--config-file", default="config.json", help="output (.json or .toml)")
    p.add_argument("-p", "--job-post-process-config", help="JSON/TOML with module, class, data")
    p.set_defaults(func=cmd_auto_config)
