"""`jobforge extensions ...`"""

from __future__ import annotations

import argparse

from airflow_jobforge.extensions.registry import Extension, Registry


def cmd_list(args: argparse.Namespace) -> int:
    registry = Registry()
    for ext in registry.list_extensions():
        print(f"{ext.name}: {ext.description}")
        print(f"    parameters: {ext.parameters_class}")
        print(f"    execution:  {ext.execution_class}")
        print(f"    cli:        {ext.cli_class}")
    print(f"(registry file: {registry.path})")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    ext = Extension(
        args.name, args.description, args.parameters_class, args.execution_class, args.cli_class
    )
    Registry().register(ext, replace=args.replace)
    print(f"Registered extension {ext.name!r}")
    return 0


def cmd_unregister(args: argparse.Namespace) -> int:
    Registry().unregister(args.name)
    print(f"Unregistered extension {args.name!r}")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    Registry().reset_defaults()
    print("Registry reset to the installed extensions")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ext = sub.add_parser("extensions", help="list and register job extensions")
    esub = ext.add_subparsers(dest="extensions_command", required=True, metavar="COMMAND")
    p = esub.add_parser("list", help="show registered extensions")
    p.set_defaults(func=cmd_list)
    p = esub.add_parser("register", help="register a user extension")
    p.add_argument("name", help="the name jobs give in their extension field")
    p.add_argument("--description", default="", help="one line shown by list")
    p.add_argument(
        "--parameters-class", required=True, metavar="MODULE:CLASS", help="its job parameters"
    )
    p.add_argument("--execution-class", required=True, metavar="MODULE:CLASS", help="runs its jobs")
    p.add_argument("--cli-class", required=True, metavar="MODULE:CLASS", help="its auto_config")
    p.add_argument("--replace", action="store_true", help="replace an existing registration")
    p.set_defaults(func=cmd_register)
    p = esub.add_parser("unregister", help="remove (or disable a built-in) extension")
    p.add_argument("name", help="the extension's name")
    p.set_defaults(func=cmd_unregister)
    p = esub.add_parser("reset-defaults", help="forget user registrations")
    p.set_defaults(func=cmd_reset)
