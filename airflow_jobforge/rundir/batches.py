"""The batch file handed to the node runner (`<run dir>/batches/<batch>.json`): just what a
node needs, as plain JSON.

Plain dataclasses, not the config models: the runner starts on every batch's node and must
start fast and read only its own batch, never the whole (maybe 100 MB) configuration. It sits
with the run dir's other formats, below everything that writes or reads it: the planner, the
SLURM script, the node runner, extensions that say how a job starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

BATCHES_DIR = "batches"


@dataclass(frozen=True)
class JobSpec:
    name: str
    command: str
    blocked_by: tuple[str, ...] = ()
    external_blockers: tuple[str, ...] = ()
    cancel_on_blocking_job_failure: bool = False
    extension: str = "generic_command"
    estimate_s: float | None = None
    """The job's estimated run time: a runner near its walltime starts it only if it fits."""
    claim_index: int | None = None
    """Its place in the batch as planned (None: its place in this spec). Claims are by chunk
    of places (rundir.claims), so a batch restricted to some jobs (a retry, a continuation)
    claims the chunks its planned batch did."""

    def place(self, position: int) -> int:
        return position if self.claim_index is None else self.claim_index


@dataclass(frozen=True)
class SparkSpec:
    """The batch's Spark cluster (the group's `spark` settings, validated by the config).
    Memory values are SLURM-style sizes (plain number: MB); the node turns them into Spark's."""

    worker_memory: str | None = None
    worker_cores: int | None = None
    driver_memory: str = "1G"
    executor_memory: str | None = None
    memory_overhead: str = "1G"
    conf: dict[str, str] = field(default_factory=dict)
    local_dir: str | None = None
    spark_home: str | None = None
    startup_timeout_s: float = 120.0


@dataclass(frozen=True)
class ContainerSpec:
    """The image each job's command runs in (the group's `container` with scope `job`)."""

    runtime: str
    image: str
    bind: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()
    workdir: str | None = None
    gpus: bool = False
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchSpec:
    batch: str
    jobs: tuple[JobSpec, ...]
    num_processes: int | None = None
    node_setup_command: str | None = None
    node_teardown_command: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # The resource monitor's sampling interval; 0 (or an older batch file) means off.
    monitor_interval_s: float = 0.0
    spark: SparkSpec | None = None
    container: ContainerSpec | None = None
    # Work sharing (rundir.claims): the group whose batches share, and the claim unit.
    group: str | None = None
    share: bool = False
    claim_chunk: int = 1
    # Walltime awareness (node.runner): a runner starts no job that would not end this far
    # before its allocation's end (None: it starts every job); the wait continues what it
    # left in a new batch, at most `max_continuations` times.
    walltime_margin_s: float | None = None
    max_continuations: int = 0

    def to_dict(self) -> dict[str, Any]:
        """What `dataclasses.asdict` gives, built directly: asdict copies value by value,
        and every submit and wait of a 1,000-job batch converts its spec (11% of a task
        process's time in the 20,000-job deployment run, sampled with py-spy)."""
        data = {name: getattr(self, name) for name in _BATCH_FIELDS}
        data["jobs"] = tuple({name: getattr(j, name) for name in _JOB_FIELDS} for j in self.jobs)
        data["env"] = dict(self.env)
        if self.spark is not None:
            data["spark"] = {name: getattr(self.spark, name) for name in _SPARK_FIELDS}
        if self.container is not None:
            data["container"] = {name: getattr(self.container, name) for name in _CONTAINER_FIELDS}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchSpec:
        jobs = tuple(
            JobSpec(
                **{
                    **job,
                    "blocked_by": tuple(job.get("blocked_by", ())),
                    "external_blockers": tuple(job.get("external_blockers", ())),
                }
            )
            for job in data["jobs"]
        )
        spark = data.get("spark")
        container = data.get("container")
        if container:
            container = ContainerSpec(
                **{
                    **container,
                    "bind": tuple(container.get("bind", ())),
                    "pass_env": tuple(container.get("pass_env", ())),
                    "args": tuple(container.get("args", ())),
                }
            )
        return cls(
            **{
                **data,
                "jobs": jobs,
                "spark": SparkSpec(**spark) if spark else None,
                "container": container or None,
            }
        )

    def dump(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BatchSpec:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


_JOB_FIELDS = tuple(f.name for f in fields(JobSpec))  # values: str, bool, tuples of str
_BATCH_FIELDS = tuple(f.name for f in fields(BatchSpec))
_SPARK_FIELDS = tuple(f.name for f in fields(SparkSpec))
_CONTAINER_FIELDS = tuple(f.name for f in fields(ContainerSpec))


def array_task(spec: BatchSpec, index: int) -> BatchSpec:
    """The batch one task of a SLURM job array runs: the spec's job `index`, alone.

    Its name is `<array batch>.<index>` (no group or batch name holds a dot), so each task
    writes its own records, events and monitor files: the tasks run on different nodes at
    once and appends from several hosts to one file are not atomic on NFS."""
    if not 0 <= index < len(spec.jobs):
        raise ValueError(f"array index {index} outside batch {spec.batch} ({len(spec.jobs)} jobs)")
    return replace(spec, batch=f"{spec.batch}.{index}", jobs=(spec.jobs[index],), num_processes=1)


def restrict_batch(spec: BatchSpec, keep: Iterable[str], batch: str | None = None) -> BatchSpec:
    """The batch with only the `keep` jobs (a rerun). Their blockers inside the batch that are
    not rerun become external: the runner reads those blockers' latest records."""
    keep = set(keep)
    jobs = tuple(
        replace(
            job,
            blocked_by=tuple(b for b in job.blocked_by if b in keep),
            external_blockers=job.external_blockers
            + tuple(b for b in job.blocked_by if b not in keep),
            claim_index=job.place(position),
        )
        for position, job in enumerate(spec.jobs)
        if job.name in keep
    )
    return replace(spec, batch=batch or spec.batch, jobs=jobs)
