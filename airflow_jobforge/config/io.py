"""Load and dump configurations as JSON (default: fast for 100,000 jobs) or TOML."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from airflow_jobforge.config.models import JobConfiguration
from airflow_jobforge.config.validation import parse_configuration
from airflow_jobforge.errors import JobForgeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUFFIXES = (".json", ".toml")


def read_data(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON or TOML file; syntax errors become one line with file and location."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise JobForgeError(f"unsupported file type {suffix!r}; use .json or .toml", file=str(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise JobForgeError(f"cannot read: {exc.strerror}", file=str(path)) from None
    try:
        if suffix == ".json":
            return json.loads(raw)
        return tomllib.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise JobForgeError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            file=str(path),
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise JobForgeError(f"invalid TOML: {exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise JobForgeError(
            f"not UTF-8 text: {exc.reason} at byte {exc.start}", file=str(path)
        ) from None


def load_config(path: str | os.PathLike[str]) -> JobConfiguration:
    """Read and fully validate a configuration file."""
    return parse_configuration(read_data(path), file=str(path))


def config_to_data(config: JobConfiguration) -> dict[str, Any]:
    """Plain data for dumping; unset optional fields are left out to keep big files small."""
    return config.model_dump(mode="json", by_alias=True, exclude_none=True)


def dumps_data(data: dict[str, Any], fmt: str = ".json", indent: int | None = 2) -> str:
    if fmt == ".toml":
        return tomli_w.dumps(data)
    return json.dumps(data, indent=indent) + "\n"


def dumps_config(config: JobConfiguration, fmt: str = ".json", indent: int | None = 2) -> str:
    return dumps_data(config_to_data(config), fmt, indent)


def write_data_file(path: str | os.PathLike[str], dumps: Callable[[str], str]) -> None:
    """Write `dumps(suffix)` to `path` atomically (temp file + rename), so a crash never
    leaves half a file; JSON or TOML by the suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise JobForgeError(f"unsupported file type {suffix!r}; use .json or .toml", file=str(path))
    text = dumps(suffix)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise JobForgeError(f"cannot write: {exc.strerror}", file=str(path)) from None


def dump_config(config: JobConfiguration, path: str | os.PathLike[str]) -> None:
    write_data_file(path, lambda suffix: dumps_config(config, suffix))
