"""`jobforge`: every user error becomes one line on stderr and exit code 2, no traceback."""

from __future__ import annotations

import argparse
import sys

from airflow_jobforge import __version__
from airflow_jobforge.cli import (
    config_cmds,
    extensions_cmds,
    pipeline_cmds,
    results_cmds,
    run_cmds,
    stats_cmds,
)
from airflow_jobforge.errors import JobForgeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobforge", description="Batches of shell-command jobs on SLURM, via Airflow."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_cmds.add_parsers(sub)
    pipeline_cmds.add_parsers(sub)
    extensions_cmds.add_parsers(sub)
    run_cmds.add_parsers(sub)
    results_cmds.add_parsers(sub)
    stats_cmds.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except JobForgeError as exc:
        print(f"jobforge: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
