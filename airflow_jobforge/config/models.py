"""The job configuration: what a user writes, and everything downstream reads.

Field formats are checked here (pydantic); relations between jobs and groups (duplicates,
unknown blockers, cycles, estimates vs walltime) are checked in `validation`, so that every
problem of a file can be reported at once.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_jobforge.config.fields import (
    Constraint,
    ExtraOption,
    Gres,
    GroupName,
    JobName,
    Memory,
    SlurmWord,
    Walltime,
    parse_walltime,
)
from airflow_jobforge.errors import JobForgeError

FORMAT_VERSION = "1.0"
DEFAULT_GROUP = "default"
DEFAULT_EXTENSION = "generic_command"
DEFAULT_WALLTIME = "4:00:00"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Job(_Frozen):
    """One shell command to run on a compute node."""

    name: JobName
    command: str = Field(description="Run by bash on the node; the only user text reaching a shell")
    blocked_by: tuple[str, ...] = Field(default=(), description="Names of jobs that must end first")
    cancel_on_blocking_job_failure: bool = Field(
        default=False,
        description="Cancel this job when a blocker fails; otherwise it runs once they ended",
    )
    estimated_run_minutes: float | None = Field(default=None, gt=0)
    submission_group: GroupName | None = None
    extension: str = DEFAULT_EXTENSION
    ext: dict[str, Any] = Field(default_factory=dict, description="Free data for extensions")

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("command is empty")
        if "\x00" in value:
            raise ValueError("command contains a NUL byte")
        return value


class SlurmParams(_Frozen):
    """sbatch options of a submission group; every value is validated before rendering."""

    account: SlurmWord | None = None
    partition: SlurmWord | None = None
    qos: SlurmWord | None = None
    reservation: SlurmWord | None = None
    walltime: Walltime = DEFAULT_WALLTIME
    nodes: int = Field(default=1, ge=1)
    ntasks: int | None = Field(default=None, ge=1)
    ntasks_per_node: int | None = Field(default=None, ge=1)
    cpus_per_task: int | None = Field(default=None, ge=1)
    mem: Memory | None = None
    tmp: Memory | None = None
    gres: Gres | None = None
    constraint: Constraint | None = None
    extra: tuple[ExtraOption, ...] = Field(
        default=(), description="More sbatch options, each '--key' or '--key=value'"
    )

    @property
    def walltime_delta(self) -> timedelta:
        return parse_walltime(self.walltime)


class BatchingParams(_Frozen):
    """How the group's jobs share node allocations."""

    per_node_batch_size: int = Field(default=500, ge=1, description="Jobs per batch (count mode)")
    time_based_batching: bool = Field(
        default=False, description="Fill batches up to walltime x num_processes of estimates"
    )
    num_processes: int | None = Field(
        default=None, ge=1, description="Jobs run at once on a node; default: CPUs of the node"
    )
    try_add_blocked_jobs: bool = Field(
        default=True, description="Let a job join its blockers' batch; the node runner orders them"
    )

    @model_validator(mode="after")
    def _time_based_needs_processes(self) -> BatchingParams:
        # capacity = walltime x num_processes must be known when the DAG is built, not on the node
        if self.time_based_batching and self.num_processes is None:
            raise ValueError("time_based_batching needs num_processes (capacity is walltime x it)")
        return self


class ContainerParams(_Frozen):
    """Run the node runner inside an Apptainer/Singularity image."""

    image: str = Field(min_length=1)
    runtime: Literal["apptainer", "singularity"] = "apptainer"
    bind: tuple[str, ...] = ()
    exec_args: tuple[str, ...] = ()

    @field_validator("image", "bind", "exec_args")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        for item in (value,) if isinstance(value, str) else value:
            if any(ord(c) < 32 or ord(c) == 127 for c in item):
                raise ValueError(f"{item!r} contains control characters")
        return value


class OutOfMemoryRetry(_Frozen):
    """After OUT_OF_MEMORY: the next attempt asks for `mem_factor` x the memory, capped."""

    mem_factor: float = Field(default=2.0, gt=1)
    max_mem: Memory | None = Field(default=None, description="Never ask for more than this")


class TimeoutRetry(_Frozen):
    """After TIMEOUT: the next attempt asks for `walltime_factor` x the walltime, capped."""

    walltime_factor: float = Field(default=2.0, gt=1)
    max_walltime: Walltime | None = Field(default=None, description="Never ask for more")


class RetryParams(_Frozen):
    """Retry a batch that SLURM ended OUT_OF_MEMORY or TIMEOUT with a raised limit: its jobs
    that did not succeed run again, alone (Nextflow's / Snakemake's attempt-based resources).
    Off unless set."""

    out_of_memory: OutOfMemoryRetry | None = None
    timeout: TimeoutRetry | None = None
    max_attempts: int = Field(
        default=2, ge=1, description="Attempts of a batch in all, the first one included"
    )


class MonitorParams(_Frozen):
    """The node runner's resource monitor: per-job and per-node samples as JSON lines."""

    interval_s: float = Field(
        default=5.0, ge=0, description="Seconds between samples; 0 turns the monitor off"
    )


class SubmissionGroup(_Frozen):
    """A set of jobs sharing SLURM parameters and batching rules."""

    name: GroupName
    slurm: SlurmParams = Field(default_factory=SlurmParams)
    batching: BatchingParams = Field(default_factory=BatchingParams)
    container: ContainerParams | None = None
    retry: RetryParams | None = None
    monitor: MonitorParams = Field(default_factory=MonitorParams)

    @model_validator(mode="after")
    def _retry_needs_limits(self) -> SubmissionGroup:
        # A factor of an unknown limit (the cluster's DefMemPerCPU) cannot be computed here.
        if self.retry is not None and self.retry.out_of_memory is not None and not self.slurm.mem:
            raise ValueError("retry.out_of_memory needs slurm.mem (the memory it multiplies)")
        return self


class JobPostProcessConfig(_Frozen):
    """A class imported and called after each job with its result and output dir."""

    module: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
    class_name: str = Field(alias="class", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    data: dict[str, Any] = Field(default_factory=dict)


class JobConfiguration(BaseModel):
    """Jobs, submission groups and run-wide commands; the input of planning and the factory."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    format_version: str = FORMAT_VERSION
    jobs: list[Job] = Field(default_factory=list)
    submission_groups: list[SubmissionGroup] = Field(default_factory=list)
    setup_command: str | None = Field(default=None, description="Runs once before all jobs")
    teardown_command: str | None = Field(default=None, description="Runs once after all jobs")
    node_setup_command: str | None = Field(default=None, description="Runs on each batch's node")
    node_teardown_command: str | None = Field(
        default=None, description="Runs on each batch's node after its jobs, always"
    )
    user_data: dict[str, Any] = Field(default_factory=dict)
    job_post_process_config: JobPostProcessConfig | None = None
    job_global_config: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_group(cls, data: Any) -> Any:
        """Give a config without groups a `default` one, and jobs without a group the only one.

        Done on the raw data so that 100,000 frozen jobs are not copied afterwards.
        """
        if not isinstance(data, dict):
            return data
        groups = data.get("submission_groups") or []
        jobs = data.get("jobs")
        if not isinstance(groups, list) or not isinstance(jobs, list):
            return data
        data = dict(data)
        if not groups:
            groups = [{"name": DEFAULT_GROUP}]
            data["submission_groups"] = groups
        if len(groups) == 1:
            only = groups[0]
            only_name = only.get("name") if isinstance(only, dict) else getattr(only, "name", None)
            filled = []
            for job in jobs:
                if isinstance(job, dict) and job.get("submission_group") is None:
                    job = {**job, "submission_group": only_name}
                elif isinstance(job, Job) and job.submission_group is None:
                    job = job.model_copy(update={"submission_group": only_name})
                filled.append(job)
            data["jobs"] = filled
        return data

    # --- lookups -------------------------------------------------------------------------
    def jobs_by_name(self) -> dict[str, Job]:
        return {job.name: job for job in self.jobs}

    def groups_by_name(self) -> dict[str, SubmissionGroup]:
        return {group.name: group for group in self.submission_groups}

    def group(self, name: str) -> SubmissionGroup:
        for group in self.submission_groups:
            if group.name == name:
                return group
        raise JobForgeError(f"no submission group named {name!r}")

    # --- user data (JADE's API) ------------------------------------------------------------
    def add_user_data(self, key: str, value: Any) -> None:
        if key in self.user_data:
            raise JobForgeError(f"user_data key {key!r} already exists; remove it first")
        self.user_data[key] = copy.deepcopy(value)

    def get_user_data(self, key: str) -> Any:
        if key not in self.user_data:
            raise JobForgeError(f"user_data key {key!r} is not stored")
        return self.user_data[key]

    def remove_user_data(self, key: str) -> None:
        self.user_data.pop(key, None)

    def list_user_data_keys(self) -> list[str]:
        return sorted(self.user_data)
