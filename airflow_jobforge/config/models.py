"""The job configuration: what a user writes, and everything downstream reads.

Field formats are checked here (pydantic); relations between jobs and groups (duplicates,
unknown blockers, cycles, estimates vs walltime) are checked in `validation`, so that every
problem of a file can be reported at once.
"""

from __future__ import annotations

import copy
import re
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

    name: JobName = Field(
        description="Unique; 1-200 of A-Z a-z 0-9 _ . - (no leading . or -): it is an Airflow "
        "task id and a file name"
    )
    command: str = Field(description="Run by bash on the node; the only user text reaching a shell")
    blocked_by: tuple[str, ...] = Field(default=(), description="Names of jobs that must end first")
    cancel_on_blocking_job_failure: bool = Field(
        default=False,
        description="Cancel this job when a blocker fails; otherwise it runs once they ended",
    )
    estimated_run_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Expected run time; time-based batching needs it; at most the walltime",
    )
    submission_group: GroupName | None = Field(
        default=None, description="The job's group; optional when there is one group"
    )
    extension: str = Field(
        default=DEFAULT_EXTENSION, description="The job extension (`jobforge extensions list`)"
    )
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
    """sbatch options of a submission group; every value is validated before it reaches a script."""

    account: SlurmWord | None = Field(default=None, description="--account")
    partition: SlurmWord | None = Field(default=None, description="--partition")
    qos: SlurmWord | None = Field(default=None, description="--qos")
    reservation: SlurmWord | None = Field(default=None, description="--reservation")
    walltime: Walltime = Field(
        default=DEFAULT_WALLTIME, description="--time: M, M:S, H:M:S, D-H, D-H:M or D-H:M:S"
    )
    nodes: int = Field(default=1, ge=1, description="--nodes")
    ntasks: int | None = Field(default=None, ge=1, description="--ntasks")
    ntasks_per_node: int | None = Field(default=None, ge=1, description="--ntasks-per-node")
    cpus_per_task: int | None = Field(
        default=None, ge=1, description="--cpus-per-task; match batching.num_processes"
    )
    mem: Memory | None = Field(default=None, description="--mem: an integer, optional K/M/G/T")
    tmp: Memory | None = Field(default=None, description="--tmp: an integer, optional K/M/G/T")
    gres: Gres | None = Field(
        default=None, description="--gres: comma-separated name[:type][:count], e.g. gpu:a100:2"
    )
    constraint: Constraint | None = Field(default=None, description="--constraint")
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
    work_sharing: bool = Field(
        default=True,
        description="A batch's runner with a free slot and no ready job of its own runs ready, "
        "unblocked jobs of the group's other batches (claims in the run dir): no idle tail",
    )
    stop_before_walltime: bool = Field(
        default=True,
        description="A runner starts no job whose estimate (else the longest it has run) would "
        "not end walltime_margin_s before its allocation's end; the wait submits what it left "
        "as a continuation of the batch",
    )
    walltime_margin_s: float | None = Field(
        default=None,
        ge=0,
        description="Seconds kept free before the walltime; default 5% of it, 5 s to 2 min",
    )
    max_continuations: int = Field(
        default=3,
        ge=0,
        description="Continuations a batch may have; after them its unstarted jobs are canceled",
    )
    job_arrays: bool = Field(
        default=True,
        description="Submit one-job batches with the same dependencies as SLURM job arrays: "
        "one sbatch per up to 1,000 of them, each job still in its own allocation",
    )

    @model_validator(mode="after")
    def _time_based_needs_processes(self) -> BatchingParams:
        # capacity = walltime x num_processes must be known when the DAG is built, not on the node
        if self.time_based_batching and self.num_processes is None:
            raise ValueError("time_based_batching needs num_processes (capacity is walltime x it)")
        return self


ContainerRuntime = Literal["apptainer", "singularity", "podman", "charliecloud"]
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# podman's image references: [registry/]name[:tag][@digest]
_IMAGE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,499}")
# apptainer/singularity also take URIs: docker://, oras://, library://, shub://, docker-archive:
_IMAGE_URI = re.compile(r"[a-z][a-z0-9+-]*:[^\x00-\x1f\x7f]+")


def _no_control(value: str) -> bool:
    return not any(ord(c) < 32 or ord(c) == 127 for c in value)


class ContainerParams(_Frozen):
    """Run each job's command in an image; the node runner stays on the host, so records,
    signals, stdout/stderr files and the resource monitor work as without a container.
    `scope: runner` runs the whole node runner in the image instead (apptainer/singularity)."""

    image: str = Field(
        min_length=1,
        description="apptainer/singularity: an image file (/images/sim.sif) or URI (docker://...); "
        "podman: an image reference (localhost/sim:1); charliecloud: an image directory",
    )
    runtime: ContainerRuntime = Field(
        default="apptainer", description="apptainer, singularity, podman or charliecloud"
    )
    scope: Literal["job", "runner"] = Field(
        default="job",
        description="job: each job's command runs in the image; runner: the node runner does "
        "(apptainer/singularity only; the image needs Python)",
    )
    bind: tuple[str, ...] = Field(
        default=(),
        description="SRC[:DST[:OPTS]] to mount (DST defaults to SRC). The run's output dir and "
        "the job's working dir are always mounted at their own paths",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Variables set in the container")
    pass_env: tuple[str, ...] = Field(
        default=(),
        description="Host variables handed in by name (podman passes only these and jobforge's; "
        "apptainer and charliecloud pass the whole environment anyway)",
    )
    workdir: str | None = Field(
        default=None, description="Working dir in the container. Default: the job's own"
    )
    gpus: bool = Field(
        default=False,
        description="The node's GPUs in the container: apptainer --nv, podman CDI "
        "--device nvidia.com/gpu=all (charliecloud: inject with ch-fromhost --nvidia instead)",
    )
    exec_args: tuple[str, ...] = Field(
        default=(), description="More arguments of the runtime's run command, before the image"
    )

    @field_validator("image", "exec_args", "pass_env", "workdir")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        for item in (value,) if isinstance(value, str) or value is None else value:
            if item is not None and not _no_control(item):
                raise ValueError(f"{item!r} contains control characters")
        return value

    @field_validator("bind")
    @classmethod
    def _binds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            parts = item.split(":")
            if len(parts) > 3 or not _no_control(item):
                raise ValueError(
                    f"bind {item!r} must be SRC[:DST[:OPTS]] without control characters"
                )
            for path in parts[:2]:
                if not path.startswith("/"):
                    raise ValueError(f"bind {item!r}: {path!r} must be an absolute path")
            if len(parts) == 3 and parts[2] not in ("ro", "rw"):
                raise ValueError(f"bind {item!r}: options must be ro or rw")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(
                    f"env name {key!r} must be A-Z a-z 0-9 _, not starting with a digit"
                )
            if not isinstance(item, str) or not _no_control(item):
                raise ValueError(f"env {key!r}: the value must be text without control characters")
        return value

    @field_validator("pass_env")
    @classmethod
    def _pass_env(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"pass_env name {key!r} must be A-Z a-z 0-9 _")
        return value

    @model_validator(mode="after")
    def _per_runtime(self) -> ContainerParams:
        runtime, image = self.runtime, self.image
        if runtime == "podman":
            if not _IMAGE_REFERENCE.fullmatch(image):
                raise ValueError(f"podman image {image!r} must be a reference like localhost/sim:1")
        elif runtime == "charliecloud":
            if not image.startswith("/"):
                raise ValueError(f"charliecloud image {image!r} must be an absolute directory path")
        elif not image.startswith("/") and not _IMAGE_URI.fullmatch(image):
            raise ValueError(f"{runtime} image {image!r} must be an absolute path or a URI")
        if self.scope == "runner" and runtime not in ("apptainer", "singularity"):
            raise ValueError(
                f"scope runner needs apptainer or singularity: {runtime} runs each job's command"
            )
        if self.scope == "runner":
            unused = [
                name
                for name, value in (
                    ("env", self.env),
                    ("pass_env", self.pass_env),
                    ("workdir", self.workdir),
                    ("gpus", self.gpus),
                )
                if value
            ]
            if unused:
                raise ValueError(
                    f"{', '.join(unused)} apply to scope job only; with scope runner give the "
                    "runtime's own flags in exec_args (e.g. --nv, --env K=V)"
                )
        if runtime == "charliecloud" and any(item.count(":") == 2 for item in self.bind):
            raise ValueError("charliecloud binds take no options: ch-run mounts read-write")
        if self.gpus and runtime == "charliecloud":
            raise ValueError(
                "gpus with charliecloud: inject the driver into the image (ch-fromhost --nvidia)"
            )
        if self.workdir is not None and not self.workdir.startswith("/"):
            raise ValueError(f"workdir {self.workdir!r} must be an absolute path")
        return self


_SPARK_KEY = re.compile(r"spark\.[A-Za-z0-9_.-]+")
# Set by the cluster launcher: a user's value would point jobs away from their cluster.
RESERVED_SPARK_CONF = frozenset({"spark.master", "spark.eventLog.dir", "spark.local.dir"})


def _absolute_path(value: str | None) -> str | None:
    if value is not None and (
        not value.startswith("/") or any(ord(c) < 32 or ord(c) == 127 for c in value)
    ):
        raise ValueError(f"{value!r} must be an absolute path without control characters")
    return value


class SparkParams(_Frozen):
    """A Spark standalone cluster in each of the group's batch allocations: the master on the
    first node, a worker on every node, started before the jobs and stopped after them. Jobs
    get `SPARK_MASTER_URL` and a `SPARK_CONF_DIR` naming it, so `spark-submit` and PySpark's
    `getOrCreate()` use the cluster, never local mode."""

    enabled: bool = Field(default=True, description="Start the cluster (false: as if unset)")
    worker_memory: Memory | None = Field(
        default=None,
        description="Memory of each worker for executors (K/M/G/T, plain number: MB). Default: "
        "the node's allocated memory less driver_memory and memory_overhead",
    )
    worker_cores: int | None = Field(
        default=None, ge=1, description="Cores of each worker. Default: the node's allocated CPUs"
    )
    driver_memory: Memory = Field(
        default="1G", description="spark.driver.memory of the jobs' drivers (on the first node)"
    )
    executor_memory: Memory | None = Field(
        default=None,
        description="spark.executor.memory. Default: worker memory (one executor per worker)",
    )
    memory_overhead: Memory = Field(
        default="1G",
        description="Node memory left to the master and worker daemons, Python and the OS",
    )
    conf: dict[str, str] = Field(
        default_factory=dict,
        description="More spark-defaults entries (`spark.*` keys), e.g. "
        "spark.sql.shuffle.partitions",
    )
    local_dir: str | None = Field(
        default=None,
        description="Node-local scratch for shuffle/spill and worker dirs. Default: $TMPDIR or "
        "/tmp on each node; never inside the run's output dir (a shared file system)",
    )
    spark_home: str | None = Field(
        default=None,
        description="SPARK_HOME on the nodes. Default: the Spark that pyspark installs for the "
        "node runner's Python (`pip install airflow-jobforge[spark]`)",
    )
    startup_timeout_s: float = Field(
        default=120.0, gt=0, description="Master and all workers must be up within this"
    )
    concurrent_jobs: int = Field(
        default=1,
        ge=1,
        description="Spark jobs of a batch run at once (JADE: one at a time); each takes the "
        "cores it is given, so set spark.cores.max in conf when above 1",
    )

    @field_validator("conf")
    @classmethod
    def _conf_entries(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not _SPARK_KEY.fullmatch(key):
                raise ValueError(f"conf key {key!r} must be spark.<name> of A-Z a-z 0-9 _ . -")
            if key in RESERVED_SPARK_CONF:
                raise ValueError(
                    f"conf key {key!r} is set by jobforge (use local_dir for spark.local.dir)"
                )
            if not isinstance(item, str) or any(ord(c) < 32 or ord(c) == 127 for c in item):
                raise ValueError(f"conf value of {key!r} must be text without control characters")
        return value

    _paths = field_validator("local_dir", "spark_home")(_absolute_path)


class OutOfMemoryRetry(_Frozen):
    """After OUT_OF_MEMORY: the next attempt asks for `mem_factor` x the memory, capped."""

    mem_factor: float = Field(default=2.0, gt=1, description="The next attempt's mem: this x")
    max_mem: Memory | None = Field(default=None, description="Never ask for more than this")


class TimeoutRetry(_Frozen):
    """After TIMEOUT: the next attempt asks for `walltime_factor` x the walltime, capped."""

    walltime_factor: float = Field(
        default=2.0, gt=1, description="The next attempt's walltime: this x"
    )
    max_walltime: Walltime | None = Field(default=None, description="Never ask for more")


class RetryParams(_Frozen):
    """Retry a batch that SLURM ended OUT_OF_MEMORY or TIMEOUT with a raised limit: its jobs
    that did not succeed run again, alone (Nextflow's / Snakemake's attempt-based resources).
    Off unless set."""

    out_of_memory: OutOfMemoryRetry | None = Field(
        default=None, description="After OUT_OF_MEMORY; needs slurm.mem"
    )
    timeout: TimeoutRetry | None = Field(default=None, description="After TIMEOUT")
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

    name: GroupName = Field(
        description="Unique; 1-100 of A-Z a-z 0-9 _ - (it becomes an Airflow TaskGroup id)"
    )
    slurm: SlurmParams = Field(default_factory=SlurmParams, description="sbatch options")
    batching: BatchingParams = Field(
        default_factory=BatchingParams, description="How jobs share node allocations"
    )
    container: ContainerParams | None = Field(
        default=None, description="Run the node runner in this image"
    )
    retry: RetryParams | None = Field(
        default=None, description="Retry OUT_OF_MEMORY / TIMEOUT with more; off unless set"
    )
    monitor: MonitorParams = Field(
        default_factory=MonitorParams, description="The resource monitor on the nodes"
    )
    spark: SparkParams | None = Field(
        default=None, description="A Spark cluster in each batch's allocation (docs: Spark)"
    )
    max_concurrent_batches: int | None = Field(
        default=None,
        ge=1,
        description="At most this many of the group's batches of a run in the SLURM queue "
        "(pending or running) at once; the others wait (JADE's `max_nodes`). None: no limit",
    )

    @model_validator(mode="after")
    def _retry_needs_limits(self) -> SubmissionGroup:
        # A factor of an unknown limit (the cluster's DefMemPerCPU) cannot be computed here.
        if self.retry is not None and self.retry.out_of_memory is not None and not self.slurm.mem:
            raise ValueError("retry.out_of_memory needs slurm.mem (the memory it multiplies)")
        spark = self.spark
        if spark is not None and spark.enabled and self.container is not None:
            raise ValueError(
                "spark with a container is not supported yet: the jobs' drivers would run in "
                "the image without the cluster's environment; leave container out"
            )
        if spark is not None and spark.enabled:
            wanted = self.batching.num_processes
            if wanted is not None and wanted != spark.concurrent_jobs:
                raise ValueError(
                    f"batching.num_processes={wanted} with spark: Spark jobs run "
                    f"spark.concurrent_jobs={spark.concurrent_jobs} at a time; set that instead"
                )
        return self

    @property
    def spark_enabled(self) -> bool:
        return self.spark is not None and self.spark.enabled

    @property
    def num_processes(self) -> int | None:
        """Jobs a batch runs at once: Spark's concurrent_jobs, else the batching's."""
        if self.spark is not None and self.spark.enabled:
            return self.spark.concurrent_jobs
        return self.batching.num_processes


class JobPostProcessConfig(_Frozen):
    """A class imported and called after each job with its result and output dir."""

    module: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="Importable module, on the Airflow workers",
    )
    class_name: str = Field(
        alias="class",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Class in it: `Class(data).run(job_name, result, output_dir)`",
    )
    data: dict[str, Any] = Field(default_factory=dict, description="Handed to the constructor")


class JobConfiguration(BaseModel):
    """Jobs, submission groups and run-wide commands; the input of planning and the factory."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    format_version: str = Field(
        default=FORMAT_VERSION, description="Format of the file; major version 1"
    )
    jobs: list[Job] = Field(default_factory=list, description="The jobs")
    submission_groups: list[SubmissionGroup] = Field(
        default_factory=list, description="Without any, a group `default` is created"
    )
    setup_command: str | None = Field(default=None, description="Runs once before all jobs")
    teardown_command: str | None = Field(default=None, description="Runs once after all jobs")
    node_setup_command: str | None = Field(default=None, description="Runs on each batch's node")
    node_teardown_command: str | None = Field(
        default=None, description="Runs on each batch's node after its jobs, always"
    )
    user_data: dict[str, Any] = Field(
        default_factory=dict, description="Free data kept with the config (JADE's user data API)"
    )
    job_post_process_config: JobPostProcessConfig | None = Field(
        default=None, description="Called on the worker for each job that succeeded"
    )
    job_global_config: dict[str, Any] | None = Field(
        default=None, description="Free data kept with the config (JADE's; jobforge ignores it)"
    )

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
