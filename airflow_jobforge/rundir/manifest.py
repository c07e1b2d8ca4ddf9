"""Which directory holds a run, and the run's manifest.

A DAG's output dir holds one sub-directory per DAG run (`<output_dir>/<safe run id>`);
`jobforge run --no-airflow` writes one run straight into its output dir. A user points the
after-the-run commands at either: the output root means its newest run.

The manifest (`run.json`) says what a run was meant to do: every selected job and its batch,
the config file it came from, the DAG run. Result records only say what happened, and a job
of a batch that never started has none: the manifest is how it is still counted (missing or
canceled), and how `results resubmit` finds the original config.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_jobforge.errors import JobForgeError

MANIFEST = "run.json"
# Anything a run writes: one of these makes a directory a run dir.
RUN_MARKERS = (MANIFEST, "results", "batches", "events", "slurm", "job-output")


@dataclass(frozen=True)
class RunManifest:
    """What a run was meant to do. `jobs` maps every job of the run to its batch."""

    jobs: dict[str, str]
    config_file: str | None = None
    dag_id: str | None = None
    run_id: str | None = None
    run_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        # Its fields as they are: asdict's deep copy of 100,000 jobs cost the run's summary
        # ~0.5 s at the run's very end. Jobs in run order, one a line.
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps(fields, indent=1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunManifest:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def manifest_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / MANIFEST


def read_manifest(run_dir: str | os.PathLike[str]) -> RunManifest | None:
    """The run's manifest, or None when it has none yet (or it is unreadable)."""
    try:
        data = json.loads(manifest_path(run_dir).read_text(encoding="utf-8"))
        return RunManifest.from_dict(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def write_manifest(run_dir: str | os.PathLike[str], manifest: RunManifest) -> Path:
    """Atomically (rename), so a reader never sees half a manifest."""
    path = manifest_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}")
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    return any((Path(path) / marker).exists() for marker in RUN_MARKERS)


def resolve_run_dir(path: str | os.PathLike[str]) -> Path:
    """`path` itself when it is a run dir, else its newest run sub-directory.

    Newest by the latest change inside it (records, events), not by name: run ids of
    scheduled and manual runs do not sort by time."""
    root = Path(path)
    if not root.is_dir():
        raise JobForgeError(f"{root}: no such output directory")
    if is_run_dir(root):
        return root
    runs = [child for child in root.iterdir() if child.is_dir() and is_run_dir(child)]
    if not runs:
        raise JobForgeError(
            f"{root}: neither a run directory nor an output directory holding runs "
            "(expected results/, batches/ or run.json in it or in a sub-directory)"
        )
    return max(runs, key=_last_change)


def _last_change(run_dir: Path) -> float:
    newest = run_dir.stat().st_mtime
    for marker in RUN_MARKERS:
        try:
            newest = max(newest, (run_dir / marker).stat().st_mtime)
        except OSError:
            continue
    return newest


def safe_run_id(run_id: str) -> str:
    """A run id as a directory name: 'manual__2026-01-01T00:00:00+00:00' keeps its meaning."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
