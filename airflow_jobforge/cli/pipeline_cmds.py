"""`jobforge pipeline ...`: create, show, validate and import pipelines of configs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from airflow_jobforge.config.pipeline import (
    Pipeline,
    dump_pipeline,
    import_jade_pipeline,
    load_pipeline,
    parse_pipeline,
    pipeline_json_schema,
    read_pipeline_data,
    rebase_config_files,
)
from airflow_jobforge.errors import JobForgeError

# Options of `create` that become every stage's overrides: (option, section, field, type).
_OVERRIDE_OPTIONS: tuple[tuple[str, str, str, type], ...] = (
    ("--account", "slurm", "account", str),
    ("--partition", "slurm", "partition", str),
    ("--qos", "slurm", "qos", str),
    ("--walltime", "slurm", "walltime", str),
    ("--mem", "slurm", "mem", str),
    ("--per-node-batch-size", "batching", "per_node_batch_size", int),
    ("--num-processes", "batching", "num_processes", int),
    ("--max-concurrent-batches", "", "max_concurrent_batches", int),
)


class _InOrder(argparse.Action):
    """Appends (option kind, value) to `stages`: mixed --config, --auto-config and --name keep
    the order they were given in, which is the order of the stages."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        namespace.stages = [*(getattr(namespace, "stages", None) or []), (self.const, values)]


def _stages_given(given: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """A stage per --config / --auto-config; --name names the stage given just before it."""
    stages: list[dict[str, Any]] = []
    for kind, value in given:
        if kind != "name":
            stages.append({kind: value})
        elif not stages:
            raise JobForgeError(f"--name {value}: it must follow the stage option it names")
        elif "name" in stages[-1]:
            raise JobForgeError(f"--name {value}: stage {len(stages)} is named already")
        else:
            stages[-1]["name"] = value
    if not stages:
        raise JobForgeError("give at least one --config or --auto-config")
    return stages


def cmd_create(args: argparse.Namespace) -> int:
    out_dir = os.path.dirname(os.path.abspath(args.output))
    overrides: dict[str, Any] = {}
    for _, section, field, _ in _OVERRIDE_OPTIONS:
        value = getattr(args, field)
        if value is None:
            continue
        if section:
            overrides.setdefault(section, {})[field] = value
        else:
            overrides[field] = value
    stages = []
    for number, given in enumerate(_stages_given(args.stages), 1):
        stage: dict[str, Any] = {"name": given.get("name", f"stage{number}")}
        if "config_file" in given:
            stage["config_file"] = os.path.abspath(given["config_file"])
        else:
            stage["command"] = given["command"]
        if overrides:
            stage["overrides"] = overrides
        stages.append(stage)
    data: dict[str, Any] = {"stages": stages}
    if args.description:
        data["description"] = args.description
    pipeline = parse_pipeline(data, file=args.output, base_dir=out_dir)
    pipeline = rebase_config_files(pipeline, out_dir, out_dir)
    dump_pipeline(pipeline, args.output)
    print(f"Created pipeline with {len(pipeline.stages)} stage(s) in {args.output}")
    return 0


def _stage_rows(pipeline: Pipeline) -> list[tuple[str, ...]]:
    rows = [("#", "name", "kind", "config file / command", "overrides, options", "on_failure")]
    for number, stage in enumerate(pipeline.stages, 1):
        if stage.command is not None:
            source = _short(stage.command) + f" > {stage.config_output_path}"
        else:
            source = stage.config_file or ""
        settings = stage.overrides.describe().split()
        settings += [f"options.{k}={v}" for k, v in stage.options.given().items()]
        rows.append(
            (
                str(number),
                stage.name,
                "generated" if stage.is_generated else "config file",
                source,
                " ".join(settings),
                stage.on_failure,
            )
        )
    return rows


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_show(args: argparse.Namespace) -> int:
    pipeline, notes = load_pipeline(args.pipeline_file, check_configs=False)
    rows = _stage_rows(pipeline)
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    if pipeline.description:
        print(pipeline.description + "\n")
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    generated = sum(stage.is_generated for stage in pipeline.stages)
    print(f"\n{len(pipeline.stages)} stage(s), {generated} generated at run time")
    if notes:
        print("\nNot carried over from JADE:")
        for note in notes:
            print(f"  - {note}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.pipeline_files:
        try:
            pipeline, notes = load_pipeline(path)
        except JobForgeError as exc:
            print(exc.one_line(), file=sys.stderr)
            failed = True
            continue
        for note in notes:
            print(f"{path}: not carried over: {note}", file=sys.stderr)
        generated = sum(stage.is_generated for stage in pipeline.stages)
        print(f"{path}: OK, {len(pipeline.stages)} stage(s), {generated} generated at run time")
    return 2 if failed else 0


def cmd_import_jade(args: argparse.Namespace) -> int:
    data = read_pipeline_data(args.jade_pipeline)
    pipeline, notes = import_jade_pipeline(data, file=args.jade_pipeline)
    jade_dir = os.path.dirname(os.path.abspath(args.jade_pipeline))
    out_dir = os.path.dirname(os.path.abspath(args.output))
    dump_pipeline(rebase_config_files(pipeline, jade_dir, out_dir), args.output)
    for note in notes:
        print(f"{args.jade_pipeline}: not carried over: {note}", file=sys.stderr)
    print(f"Imported {len(pipeline.stages)} stage(s) into {args.output}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(pipeline_json_schema(), indent=2))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    pipeline = sub.add_parser("pipeline", help="create, inspect and import pipelines of configs")
    psub = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")

    p = psub.add_parser(
        "create",
        help="a pipeline of stages, in the order given: config files and generator commands",
    )
    p.set_defaults(stages=[])
    p.add_argument(
        "--config",
        action=_InOrder,
        const="config_file",
        metavar="FILE",
        help="a stage running this config (.json or .toml; ours or JADE's)",
    )
    p.add_argument(
        "--auto-config",
        action=_InOrder,
        const="command",
        metavar="COMMAND",
        help="a stage whose config COMMAND writes when the stage starts (run by bash in the "
        "pipeline run dir, to <stage name>/config.json)",
    )
    p.add_argument(
        "--name",
        action=_InOrder,
        const="name",
        metavar="NAME",
        help="name of the stage given just before (default stage<N>)",
    )
    p.add_argument("-o", "--output", required=True, help="the pipeline file (.json or .toml)")
    p.add_argument("--description", help="free text kept in the file")
    for option, section, field, kind in _OVERRIDE_OPTIONS:
        where = f"{section}.{field}" if section else field
        p.add_argument(option, dest=field, type=kind, help=f"every stage's overrides: {where}")
    p.set_defaults(func=cmd_create)

    p = psub.add_parser("show", help="print the stages as a table")
    p.add_argument("pipeline_file", help="pipeline (.json or .toml; ours or JADE's)")
    p.set_defaults(func=cmd_show)

    p = psub.add_parser(
        "validate", help="report every problem of the pipelines and their configs (exit 2 if any)"
    )
    p.add_argument("pipeline_files", nargs="+", help="pipelines (.json or .toml; ours or JADE's)")
    p.set_defaults(func=cmd_validate)

    p = psub.add_parser("import-jade", help="convert a JADE (nrel-jade) pipeline file")
    p.add_argument("jade_pipeline", help="what 'jade pipeline create' wrote (JSON, any name)")
    p.add_argument("-o", "--output", required=True, help="new pipeline (.json or .toml)")
    p.set_defaults(func=cmd_import_jade)

    p = psub.add_parser("schema", help="print the JSON Schema of pipeline files")
    p.set_defaults(func=cmd_schema)
