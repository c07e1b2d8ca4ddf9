"""Which extensions exist, and the classes each provides.

Built-ins come from the `jobforge.extensions` entry-point group (so other packages can ship
extensions by being installed); a user registry file adds or disables extensions without
packaging. Class references are "module:attr" strings imported only when asked for, so
listing extensions never imports their code.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from airflow_jobforge.errors import ExtensionError

ENTRY_POINT_GROUP = "jobforge.extensions"
ClassKind = Literal["parameters", "execution", "cli"]


@dataclass(frozen=True)
class Extension:
    name: str
    description: str
    parameters_class: str
    execution_class: str
    cli_class: str

    def class_path(self, kind: ClassKind) -> str:
        return {
            "parameters": self.parameters_class,
            "execution": self.execution_class,
            "cli": self.cli_class,
        }[kind]


def default_registry_file() -> Path:
    explicit = os.environ.get("JOBFORGE_REGISTRY")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "jobforge" / "registry.json"


def import_object(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ExtensionError(f"{path!r} is not of the form 'module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ExtensionError(f"cannot import {path!r}: {exc}") from None
    return obj


def builtin_extensions() -> dict[str, Extension]:
    found: dict[str, Extension] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ext = ep.load()
        if isinstance(ext, dict):
            ext = Extension(**ext)
        if not isinstance(ext, Extension):
            raise ExtensionError(f"entry point {ep.name!r} does not give an Extension")
        found[ext.name] = ext
    return found


class Registry:
    def __init__(self, registry_file: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(registry_file) if registry_file else default_registry_file()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"extensions": [], "disabled": []}
        except (OSError, ValueError) as exc:
            raise ExtensionError(f"cannot read registry file: {exc}", file=str(self.path)) from None
        data.setdefault("extensions", [])
        data.setdefault("disabled", [])
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def extensions(self) -> dict[str, Extension]:
        data = self._read()
        found = {
            name: ext for name, ext in builtin_extensions().items() if name not in data["disabled"]
        }
        for item in data["extensions"]:
            try:
                ext = Extension(**item)
            except TypeError as exc:
                raise ExtensionError(
                    f"malformed entry {item!r}: {exc}", file=str(self.path)
                ) from None
            found[ext.name] = ext
        return found

    def list_extensions(self) -> list[Extension]:
        return sorted(self.extensions().values(), key=lambda e: e.name)

    def is_registered(self, name: str) -> bool:
        return name in self.extensions()

    def get(self, name: str) -> Extension:
        ext = self.extensions().get(name)
        if ext is None:
            raise ExtensionError(f"extension {name!r} is not registered")
        return ext

    def get_extension_class(self, name: str, kind: ClassKind) -> Any:
        return import_object(self.get(name).class_path(kind))

    def register(self, ext: Extension, *, replace: bool = False) -> None:
        """Add a user extension after checking that its three classes import."""
        if self.is_registered(ext.name) and not replace:
            raise ExtensionError(f"extension {ext.name!r} is already registered")
        for kind in ("parameters", "execution", "cli"):
            import_object(ext.class_path(kind))  # type: ignore[arg-type]
        data = self._read()
        data["extensions"] = [e for e in data["extensions"] if e.get("name") != ext.name]
        data["extensions"].append(asdict(ext))
        data["disabled"] = [n for n in data["disabled"] if n != ext.name]
        self._write(data)

    def unregister(self, name: str) -> None:
        if not self.is_registered(name):
            raise ExtensionError(f"extension {name!r} is not registered")
        data = self._read()
        data["extensions"] = [e for e in data["extensions"] if e.get("name") != name]
        if name in builtin_extensions() and name not in data["disabled"]:
            data["disabled"].append(name)
        self._write(data)

    def reset_defaults(self) -> None:
        """Forget user registrations: only the installed (entry-point) extensions remain."""
        self.path.unlink(missing_ok=True)
