"""A pipeline's run dir: one run dir per stage, the pipeline's manifest and each stage's end.

```
<output_dir>/<safe run id>/      the pipeline run dir
    pipeline.json                PipelineRunManifest, written when the run starts
    <stage name>/                the stage's run dir (run.json, results/, job-output/, ...)
    <stage name>/stage.json      StageStatus, written when the stage ends
    output-stage<N> -> <stage>   JADE's names for the stage dirs (ignored here)
```

The manifest says which stages the run has, in order, so a stage that never started is still
shown; `stage.json` says how a stage ended, which its records cannot say for a stage that
was skipped or whose generator failed. The DAG may write both over SSH (a client's
`write_text`): the paths and the JSON texts are here for it, besides the local writers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.rundir.manifest import RUN_MARKERS, is_run_dir, resolve_run_dir
from airflow_jobforge.rundir.records import Summary

PIPELINE_MANIFEST = "pipeline.json"
STAGE_STATUS = "stage.json"

CONFIG = "config"
GENERATED = "generated"
SUCCESS = "success"
FAILED = "failed"
SKIPPED = "skipped"
RUNNING = "running"
NOT_STARTED = "not started"
ENDED_STATES = (SUCCESS, FAILED, SKIPPED)
STAGE_STATES = (*ENDED_STATES, RUNNING, NOT_STARTED)


@dataclass(frozen=True)
class StageEntry:
    """One stage as the pipeline defines it. `kind`: "config" (`config_file`) or
    "generated" (`command` writes the config at run time)."""

    name: str
    number: int
    kind: str
    config_file: str | None = None
    command: str | None = None
    on_failure: str = "stop"

    def describe(self) -> str:
        """`config file sims.json` or `generated`: what a heading says of the stage."""
        if self.kind == CONFIG and self.config_file:
            return f"config file {self.config_file}"
        return self.kind

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageEntry:
        entry = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        check_stage_name(entry.name)
        return entry


@dataclass(frozen=True)
class PipelineRunManifest:
    """What a pipeline run was meant to do: its stages, in order."""

    stages: list[StageEntry]
    pipeline_file: str | None = None
    dag_id: str | None = None
    run_id: str | None = None

    def to_json(self) -> str:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["stages"] = [_entry_dict(s) for s in self.stages]
        return json.dumps(fields, indent=1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PipelineRunManifest:
        """Raises ValueError, TypeError or KeyError for what is no pipeline manifest."""
        stages = [StageEntry.from_dict(s) for s in data["stages"]]
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        rest = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "stages"}
        return cls(stages=stages, **rest)

    def stage(self, name: str) -> StageEntry | None:
        return next((s for s in self.stages if s.name == name), None)


@dataclass(frozen=True)
class StageStatus:
    """How a stage ended. `jobs`: how many it had (None when it never planned any);
    `ended`: ISO time."""

    state: str
    reason: str | None = None
    jobs: int | None = None
    ended: str | None = None

    def to_json(self) -> str:
        return json.dumps({name: getattr(self, name) for name in self.__dataclass_fields__})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageStatus:
        status = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        if status.state not in ENDED_STATES:
            raise ValueError(f"stage state {status.state!r} is none of {ENDED_STATES}")
        return status

    @classmethod
    def ended_now(
        cls, state: str, reason: str | None = None, jobs: int | None = None
    ) -> StageStatus:
        """A status ended now (UTC): what the DAG writes when a stage ends."""
        return cls(state, reason, jobs, datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _entry_dict(entry: StageEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in entry.__dataclass_fields__}


def check_stage_name(name: str) -> str:
    """A stage name is a directory of the pipeline run dir: no path may hide in it."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or name.startswith(".")
        or any(c in name for c in "/\\\0")
    ):
        raise ValueError(f"{name!r} is no stage name (a plain directory name)")
    return name


def pipeline_manifest_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / PIPELINE_MANIFEST


def stage_dir(run_dir: str | os.PathLike[str], name: str) -> Path:
    """`<pipeline run dir>/<name>`; raises JobForgeError for a name that is no plain dir."""
    try:
        return Path(run_dir) / check_stage_name(name)
    except ValueError as exc:
        raise JobForgeError(str(exc), file=str(run_dir)) from None


def stage_status_path(stage_dir: str | os.PathLike[str]) -> Path:
    return Path(stage_dir) / STAGE_STATUS


def _write_atomically(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_pipeline_manifest(run_dir: str | os.PathLike[str], manifest: PipelineRunManifest) -> Path:
    """Atomically (rename), so a reader never sees half a manifest."""
    return _write_atomically(pipeline_manifest_path(run_dir), manifest.to_json())


def read_pipeline_manifest(run_dir: str | os.PathLike[str]) -> PipelineRunManifest | None:
    """The pipeline's manifest, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(pipeline_manifest_path(run_dir).read_text(encoding="utf-8"))
        return PipelineRunManifest.from_dict(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError, KeyError):
        return None


def is_pipeline_run_dir(path: str | os.PathLike[str]) -> bool:
    return pipeline_manifest_path(path).is_file()


def write_stage_status(stage_dir: str | os.PathLike[str], status: StageStatus) -> Path:
    return _write_atomically(stage_status_path(stage_dir), status.to_json())


def read_stage_status(stage_dir: str | os.PathLike[str]) -> StageStatus | None:
    try:
        data = json.loads(stage_status_path(stage_dir).read_text(encoding="utf-8"))
        return StageStatus.from_dict(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def stage_state(run_dir: str | os.PathLike[str], entry: StageEntry) -> tuple[str, str | None]:
    """(state, reason): how `stage.json` says the stage ended; without one "running" when
    its dir exists (a generator makes it first; the run's manifest comes only at its end),
    else "not started"."""
    directory = stage_dir(run_dir, entry.name)
    status = read_stage_status(directory)
    if status is not None:
        return status.state, status.reason
    return (RUNNING, None) if directory.is_dir() else (NOT_STARTED, None)


@dataclass(frozen=True)
class Stage:
    """One stage of a pipeline run as its dir shows it."""

    entry: StageEntry
    dir: Path
    state: str
    reason: str | None = None
    count: int = 1
    """How many stages the pipeline has (for `stage 2/3`)."""

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def started(self) -> bool:
        """It left a run dir: there are jobs (or their absence) to show."""
        return self.dir.is_dir() and is_run_dir(self.dir)


def read_stages(
    run_dir: str | os.PathLike[str], manifest: PipelineRunManifest | None = None
) -> list[Stage]:
    """Every stage of the run, in order; raises JobForgeError without a readable manifest."""
    manifest = manifest or read_pipeline_manifest(run_dir)
    if manifest is None:
        raise JobForgeError(
            f"no readable {PIPELINE_MANIFEST}: not a pipeline run dir", file=str(run_dir)
        )
    count = len(manifest.stages)
    stages = []
    for entry in manifest.stages:
        state, reason = stage_state(run_dir, entry)
        stages.append(Stage(entry, stage_dir(run_dir, entry.name), state, reason, count))
    return stages


def stage_heading(stage: Stage, summary: Summary | None = None) -> str:
    """`stage 1/2 simulate (config file sims.json): success — 10 jobs: 9 successful, ...`;
    the reason, when there is one, before the counts."""
    said = [part for part in (stage.reason, str(summary) if summary else None) if part]
    tail = f" — {'; '.join(said)}" if said else ""
    return (
        f"stage {stage.entry.number}/{stage.count} {stage.name} ({stage.entry.describe()}): "
        f"{stage.state}{tail}"
    )


def stages_line(stages: list[Stage]) -> str:
    """`3 stages: 1 success, 1 failed, 1 skipped`, states in their own order."""
    counts = {s: sum(stage.state == s for stage in stages) for s in STAGE_STATES}
    said = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"{len(stages)} stage{'s' if len(stages) != 1 else ''}: {said or 'none'}"


def add_summaries(summaries: list[Summary]) -> Summary:
    """JADE's four counts over several runs (a pipeline's stages)."""
    return Summary(
        successful=sum(s.successful for s in summaries),
        failed=sum(s.failed for s in summaries),
        canceled=sum(s.canceled for s in summaries),
        missing=sum(s.missing for s in summaries),
        total=sum(s.total for s in summaries),
    )


def pipeline_succeeded(stages: list[Stage], summaries: list[Summary]) -> bool:
    """Every stage ended in success and no job of any did not succeed."""
    return all(s.state == SUCCESS for s in stages) and all(
        s.successful == s.total for s in summaries
    )


def resolve_results_dir(path: str | os.PathLike[str]) -> Path:
    """`path` itself when it is a run dir or a pipeline run dir, else its newest one of
    either (as `resolve_run_dir`, which it is for an output root of plain runs)."""
    root = Path(path)
    if is_pipeline_run_dir(root):
        return root
    if not root.is_dir() or is_run_dir(root):
        return resolve_run_dir(root)
    pipelines = [child for child in root.iterdir() if child.is_dir() and is_pipeline_run_dir(child)]
    if not pipelines:
        return resolve_run_dir(root)
    runs = [child for child in root.iterdir() if child.is_dir() and is_run_dir(child)]
    return max([*pipelines, *runs], key=_last_change)


def _last_change(run_dir: Path) -> float:
    """The latest change in a run dir or in any stage dir of a pipeline run dir."""
    dirs = [run_dir]
    newest = 0.0
    if is_pipeline_run_dir(run_dir):
        dirs += [c for c in run_dir.iterdir() if c.is_dir() and not c.is_symlink()]
        newest = pipeline_manifest_path(run_dir).stat().st_mtime
    for directory in dirs:
        newest = max(newest, directory.stat().st_mtime)
        for marker in RUN_MARKERS:
            try:
                newest = max(newest, (directory / marker).stat().st_mtime)
            except OSError:
                continue
    return newest


def single_run_dir(path: str | os.PathLike[str]) -> Path:
    """The run dir a command that acts on one run (cancel, resubmit, events) was given;
    a pipeline run dir is refused with the stage dir to give instead (the first stage that
    did not succeed, else the first)."""
    run_dir = resolve_results_dir(path)
    if not is_pipeline_run_dir(run_dir):
        return run_dir
    manifest = read_pipeline_manifest(run_dir)
    stages = read_stages(run_dir, manifest) if manifest is not None else []
    started = [s for s in stages if s.started]
    pick = next((s for s in started if s.state != SUCCESS), started[0] if started else None)
    example = pick or (stages[0] if stages else None)
    hint = f", e.g. {example.dir}" if example else ""
    raise JobForgeError(f"{run_dir} is a pipeline run dir: give a stage's dir{hint}")
