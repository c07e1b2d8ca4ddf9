"""mkdocs hook: the reference pages are rendered from the code at build time, so they cannot
drift from it.

- `<!-- jobforge:config-reference -->` becomes a table of fields per model, read from the
  JSON Schema of `JobConfiguration` (the same schema `jobforge config schema` prints).
- `<!-- jobforge:pipeline-reference -->` the same for pipeline files, from the JSON Schema of
  `Pipeline` (what `jobforge pipeline schema` prints).
- `<!-- jobforge:cli-reference -->` becomes every `jobforge` command and sub-command with its
  usage and options, read from the argparse parsers of `build_parser()`, plus the node
  runner's own command line.

Only pydantic and the standard library are imported (no Airflow): the build stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

CONFIG_MARKER = "<!-- jobforge:config-reference -->"
PIPELINE_MARKER = "<!-- jobforge:pipeline-reference -->"
CLI_MARKER = "<!-- jobforge:cli-reference -->"
# argparse wraps usage lines at the terminal width; a fixed one makes the pages reproducible.
USAGE_COLUMNS = "88"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    renderers: dict[str, Callable[[], str]] = {
        CONFIG_MARKER: config_reference,
        PIPELINE_MARKER: pipeline_reference,
        CLI_MARKER: cli_reference,
    }
    for marker, render in renderers.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown


# --- configuration reference -----------------------------------------------------------------


def config_reference() -> str:
    from airflow_jobforge.config.models import JobConfiguration

    return _schema_reference("JobConfiguration", JobConfiguration.model_json_schema(by_alias=True))


def pipeline_reference() -> str:
    from airflow_jobforge.config.pipeline import Pipeline

    return _schema_reference("Pipeline", Pipeline.model_json_schema(by_alias=True))


def _schema_reference(top: str, schema: dict[str, Any]) -> str:
    """A section per model: the top level first, then each model where it first appears."""
    defs: dict[str, Any] = schema.get("$defs", {})
    sections = [_model_section(top, schema, "The file's top level.")]
    for name, path in _models_in_order(schema, defs):
        sections.append(_model_section(name, defs[name], f"At `{path}`." if path else ""))
    return "\n".join(sections)


def _models_in_order(schema: dict[str, Any], defs: dict[str, Any]) -> list[tuple[str, str]]:
    """Every model reached from the top level, depth first in field order, with the path of
    the first place it appears (`submission_groups[].slurm`)."""
    seen: dict[str, str] = {}

    def walk(model: dict[str, Any], path: str) -> None:
        for field, prop in model.get("properties", {}).items():
            field_path = f"{path}.{field}" if path else field
            for ref, is_list in _refs(prop):
                if ref not in seen:
                    seen[ref] = field_path + ("[]" if is_list else "")
                    walk(defs[ref], seen[ref])

    walk(schema, "")
    for name in defs:  # anything only reachable another way still gets its section
        seen.setdefault(name, "")
    return list(seen.items())


def _refs(prop: dict[str, Any], is_list: bool = False) -> Iterator[tuple[str, bool]]:
    if "$ref" in prop:
        yield prop["$ref"].rsplit("/", 1)[-1], is_list
    for part in prop.get("anyOf", ()):
        yield from _refs(part, is_list)
    if prop.get("type") == "array" and isinstance(prop.get("items"), dict):
        yield from _refs(prop["items"], True)


def _anchor(model: str) -> str:
    return model.lower()


def _model_section(name: str, model: dict[str, Any], where: str) -> str:
    lines = [f"### {name} {{#{_anchor(name)}}}", ""]
    if where:
        lines += [where, ""]
    description = model.get("description")
    if description:
        lines += [_plain(" ".join(description.split())), ""]
    required = set(model.get("required", ()))
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    for field, prop in model.get("properties", {}).items():
        default = "**required**" if field in required else _default(prop)
        description = _cell(_plain(_description(prop)))
        lines.append(f"| `{field}` | {_type(prop)} | {default} | {description} |")
    return "\n".join(lines) + "\n"


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        ref = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{ref}](#{_anchor(ref)})"
    if "anyOf" in prop:
        parts = [_type(p) for p in prop["anyOf"]]
        return " or ".join(parts)
    if "enum" in prop:
        return " or ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        items = prop.get("items")
        return f"array of {_type(items)}" if isinstance(items, dict) and items else "array"
    bounds = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤")):
        if key in prop:
            bounds.append(f"{sign} {prop[key]:g}")
    if "minLength" in prop:
        bounds.append(f"length ≥ {prop['minLength']}")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _default(prop: dict[str, Any]) -> str:
    if "default" in prop:
        return f"`{json.dumps(prop['default'])}`"
    # pydantic leaves out defaults made by a factory: an empty list/dict or a model's defaults
    if "$ref" in prop:
        ref = prop["$ref"].rsplit("/", 1)[-1]
        return f"the defaults of [{ref}](#{_anchor(ref)})"
    return {"array": "`[]`", "object": "`{}`"}.get(prop.get("type", ""), "")


def _description(prop: dict[str, Any]) -> str:
    text = prop.get("description", "")
    if "pattern" in prop:
        text += f" (pattern `{prop['pattern']}`)"
    return text


def _cell(text: str) -> str:
    """Table cells hold one line and no unescaped pipe."""
    return " ".join(text.split()).replace("|", "\\|")


def _plain(text: str) -> str:
    """Text from the code shown as written: outside `code spans`, brackets would make
    reference links (`name[:type][:count]`), `<x>` an HTML tag, `*` emphasis."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"([\\\[\]*_])", r"\\\1", parts[i]).replace("<", "&lt;")
    return "`".join(parts)


# --- CLI reference ---------------------------------------------------------------------------


def cli_reference() -> str:
    from airflow_jobforge.cli.main import build_parser

    with _usage_width():
        sections = [_command_section(build_parser(), None, 2)]
        sections.append(_node_runner_section())
    return "\n".join(sections)


@contextlib.contextmanager
def _usage_width() -> Iterator[None]:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = USAGE_COLUMNS
    try:
        yield
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def _command_section(parser: argparse.ArgumentParser, summary: str | None, level: int) -> str:
    """One heading per command, then its sub-commands; a group command (`config`, `results`)
    lists its sub-commands instead of an options table of its own."""
    lines = [f"{'#' * level} `{parser.prog}` {{#{_slug(parser.prog)}}}", ""]
    if summary:
        lines += [_plain(_sentence(summary)), ""]
    if parser.description and parser.description != summary:
        lines += [_plain(_sentence(parser.description)), ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    rows = [_argument_row(action) for action in parser._actions if _documented(action)]
    if rows:
        lines += ["| argument | description |", "|---|---|", *rows, ""]
    children = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                summary = _plain(helps.get(name) or "")
                lines.append(f"- [`{child.prog}`](#{_slug(child.prog)}): {summary}")
                children.append(_command_section(child, helps.get(name), min(level + 1, 4)))
            lines.append("")
    return "\n".join(lines) + "\n" + "\n".join(children)


def _documented(action: argparse.Action) -> bool:
    return not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))


def _argument_row(action: argparse.Action) -> str:
    formatter = argparse.HelpFormatter("jobforge")
    invocation = formatter._format_action_invocation(action)
    notes = []
    if action.help and action.help != argparse.SUPPRESS:
        notes.append(_plain(_sentence(action.help % {**vars(action), "prog": "jobforge"})))
    if action.option_strings and action.required:
        notes.append("Required.")
    if isinstance(action, argparse._AppendAction) and "repeatable" not in (action.help or ""):
        notes.append("Repeatable.")
    if action.choices is not None and "{" not in invocation:
        notes.append("One of " + ", ".join(f"`{c}`" for c in action.choices) + ".")
    default = action.default
    shown = default not in (None, False, "", argparse.SUPPRESS) and not isinstance(
        action, argparse._VersionAction
    )
    if shown and "(default" not in (action.help or ""):
        notes.append(f"Default `{default}`.")
    return f"| `{_cell(invocation)}` | {_cell(' '.join(notes))} |"


def _node_runner_section() -> str:
    """`python -m airflow_jobforge.node`: its parser lives inside its main(), so its help is
    taken from there, as a user would see it."""
    from airflow_jobforge.node.__main__ import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["run-batch", "--help"])
    return "\n".join(
        [
            "## `python -m airflow_jobforge.node run-batch` {#node-runner}",
            "",
            "What a batch's sbatch script runs on the compute node; you do not call it "
            "yourself, except to run a batch file by hand.",
            "",
            "```text",
            out.getvalue().strip(),
            "```",
            "",
        ]
    )


def _slug(prog: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prog.lower()).strip("-")


def _sentence(text: str) -> str:
    """Help strings are lower-case phrases; as table cells they read as sentences. A first
    word that is a name (`estimated_run_minutes`, `slurm.mem`, `DIR`) keeps its case."""
    text = " ".join(text.split())
    first = text.split(" ", 1)[0].rstrip(",;:")
    if first.isalpha() and first.islower():
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", ":")) else text + "."
