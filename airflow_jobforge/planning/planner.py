"""Jobs -> batches: which jobs share one node allocation, and which batch waits for which.

Pure and deterministic: the DAG factory calls it at parse time, so it must be cheap
(100,000 jobs well under a second) and give the same plan for the same config every time.

Cross-batch dependencies become batch -> batch edges. To keep those edges acyclic, a batch
is *sealed* (no job may join it any more) as soon as a job in another open batch depends on
it; edges then only point from a batch to batches sealed before it, an order with no cycles.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace

from airflow_jobforge.config.graph import topological_order
from airflow_jobforge.config.models import Job, JobConfiguration, SubmissionGroup
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.rundir.batches import BatchSpec, ContainerSpec, JobSpec, SparkSpec


@dataclass(frozen=True)
class Batch:
    """Jobs that run in one SLURM allocation, `num_processes` at a time."""

    name: str
    group: str
    jobs: tuple[str, ...]
    depends_on: tuple[str, ...]
    array: bool = False
    """A SLURM job array: each job in an allocation of its own (merged one-job batches)."""


@dataclass(frozen=True)
class BatchPlan:
    batches: tuple[Batch, ...]
    batch_of: dict[str, str]

    def batch(self, name: str) -> Batch:
        for batch in self.batches:
            if batch.name == name:
                return batch
        raise KeyError(name)


@dataclass
class _Open:
    serial: int
    group: SubmissionGroup
    index: int
    jobs: list[str] = field(default_factory=list)
    minutes: float = 0.0
    depends_on: set[int] = field(default_factory=set)

    def is_full_for(self, job: Job) -> bool:
        batching = self.group.batching
        if not self.jobs:
            return False
        if batching.time_based_batching:
            assert batching.num_processes is not None and job.estimated_run_minutes is not None
            capacity = (
                self.group.slurm.walltime_delta.total_seconds() / 60 * (batching.num_processes)
            )
            return self.minutes + job.estimated_run_minutes > capacity
        return len(self.jobs) >= batching.per_node_batch_size


def batch_name(group: str, index: int) -> str:
    return f"{group}-{index:04d}"


def plan_batches(config: JobConfiguration, only: Collection[str] | None = None) -> BatchPlan:
    """Plan batches for the config's jobs (or the subset `only`, which keeps config order).

    Blockers outside `only` are treated as already done.
    """
    jobs = config.jobs if only is None else [j for j in config.jobs if j.name in set(only)]
    by_name = {job.name: job for job in jobs}
    groups = config.groups_by_name()
    order = topological_order(list(by_name), {j.name: j.blocked_by for j in jobs})
    if len(order) != len(by_name):
        raise JobForgeError(
            "the jobs' dependencies contain a cycle; see 'jobforge config validate'"
        )

    open_by_group: dict[str, _Open] = {}
    all_batches: list[_Open] = []
    sealed: set[int] = set()
    batch_serial_of: dict[str, int] = {}
    next_index: dict[str, int] = {}

    def new_batch(group: SubmissionGroup) -> _Open:
        index = next_index.get(group.name, 0)
        next_index[group.name] = index + 1
        batch = _Open(serial=len(all_batches), group=group, index=index)
        all_batches.append(batch)
        open_by_group[group.name] = batch
        return batch

    def seal(batch: _Open) -> None:
        sealed.add(batch.serial)
        if open_by_group.get(batch.group.name) is batch:
            del open_by_group[batch.group.name]

    for name in order:
        job = by_name[name]
        group = groups[job.submission_group or ""]
        current = open_by_group.get(group.name) or new_batch(group)
        if current.is_full_for(job):
            seal(current)
            current = new_batch(group)
        blocker_batches = {batch_serial_of[b] for b in job.blocked_by if b in batch_serial_of}
        if current.serial in blocker_batches and not group.batching.try_add_blocked_jobs:
            seal(current)
            current = new_batch(group)
        for serial in blocker_batches:
            if serial != current.serial and serial not in sealed:
                seal(all_batches[serial])
        current.jobs.append(name)
        current.minutes += job.estimated_run_minutes or 0.0
        current.depends_on.update(blocker_batches - {current.serial})
        batch_serial_of[name] = current.serial

    names = [batch_name(b.group.name, b.index) for b in all_batches]
    batches = tuple(
        Batch(
            name=names[b.serial],
            group=b.group.name,
            jobs=tuple(b.jobs),
            depends_on=tuple(sorted(names[s] for s in b.depends_on)),
        )
        for b in all_batches
    )
    batch_of = {job: names[serial] for job, serial in batch_serial_of.items()}
    return BatchPlan(batches=batches, batch_of=batch_of)


def batch_spec(
    config: JobConfiguration,
    plan: BatchPlan,
    batch: Batch,
    by_name: dict[str, Job] | None = None,
) -> BatchSpec:
    """What the node needs for one batch: blockers inside it, and blockers run before it.

    Pass `by_name` when calling for many batches: building it is O(jobs)."""
    by_name = by_name if by_name is not None else config.jobs_by_name()
    members = set(batch.jobs)
    jobs = []
    for name in batch.jobs:
        job = by_name[name]
        jobs.append(
            JobSpec(
                name=name,
                command=job.command,
                blocked_by=tuple(b for b in job.blocked_by if b in members),
                external_blockers=tuple(
                    b for b in job.blocked_by if b not in members and b in plan.batch_of
                ),
                cancel_on_blocking_job_failure=job.cancel_on_blocking_job_failure,
                extension=job.extension,
                estimate_s=(
                    None if job.estimated_run_minutes is None else job.estimated_run_minutes * 60
                ),
            )
        )
    group = config.group(batch.group)
    return BatchSpec(
        batch=batch.name,
        jobs=tuple(jobs),
        num_processes=group.num_processes,
        node_setup_command=config.node_setup_command,
        node_teardown_command=config.node_teardown_command,
        monitor_interval_s=group.monitor.interval_s,
        spark=spark_spec(group),
        container=container_spec(group),
        group=group.name,
        share=group.batching.work_sharing and not batch.array,
        claim_chunk=claim_chunk([by_name[n] for n in batch.jobs], group.num_processes),
        walltime_margin_s=walltime_margin(group),
        max_continuations=group.batching.max_continuations,
    )


def walltime_margin(group: SubmissionGroup) -> float | None:
    """Seconds a runner keeps free before its walltime (node.walltime); None: it starts every
    job. By default 5 % of the walltime, at least 5 s (the runner's own start and stop), at
    most 2 min (SLURM's kill of a job that outlives it comes after KillWait, 30 s default)."""
    batching = group.batching
    if not batching.stop_before_walltime:
        return None
    if batching.walltime_margin_s is not None:
        return batching.walltime_margin_s
    return min(120.0, max(5.0, 0.05 * group.slurm.walltime_delta.total_seconds()))


CLAIM_TARGET_S = 30.0
CLAIM_CHUNK_MAX = 64


def claim_chunk(jobs: list[Job], slots: int | None) -> int:
    """Jobs per claim when batches share work (rundir.claims): one where jobs are long (a
    chunk is the unit another batch takes: the tail balances job by job), about 30 s of work
    where estimates say jobs are short, and without estimates an eighth of a slot's share
    of the batch (at most 64: a 20,000-job run makes hundreds of claims, not 20,000)."""
    estimates = [j.estimated_run_minutes for j in jobs]
    if jobs and all(e is not None for e in estimates):
        mean_s = 60 * sum(e for e in estimates if e is not None) / len(jobs)
        return max(1, min(CLAIM_CHUNK_MAX, int(CLAIM_TARGET_S / max(mean_s, 1e-3) + 1e-9)))
    return max(1, min(CLAIM_CHUNK_MAX, len(jobs) // (8 * max(1, slots or 1))))


def container_spec(group: SubmissionGroup) -> ContainerSpec | None:
    """The image the group's jobs run in; None without one, or when the whole node runner
    runs in it (scope `runner`: the batch script wraps the runner instead)."""
    container = group.container
    if container is None or container.scope != "job":
        return None
    return ContainerSpec(
        runtime=container.runtime,
        image=container.image,
        bind=container.bind,
        env=dict(container.env),
        pass_env=container.pass_env,
        workdir=container.workdir,
        gpus=container.gpus,
        args=container.exec_args,
    )


def spark_spec(group: SubmissionGroup) -> SparkSpec | None:
    """What the node needs of the group's Spark settings; None without an enabled cluster.
    The node's fields are the config's, less what only planning reads."""
    spark = group.spark
    if spark is None or not spark.enabled:
        return None
    return SparkSpec(**spark.model_dump(exclude={"enabled", "concurrent_jobs"}))


ARRAY_MAX = 1000
"""Tasks per array: SLURM's default MaxArraySize (1001) allows indices 0-1000."""


def array_name(group: str, index: int) -> str:
    return f"{group}-array{index:04d}"


def merge_arrays(plan: BatchPlan, config: JobConfiguration) -> BatchPlan:
    """A group's one-job batches that wait for the same batches, as job arrays of up to
    ARRAY_MAX tasks: one sbatch (one submit RPC) instead of one per job, and one submit and
    wait task pair in the DAG instead of one per job.

    Only batches with equal dependencies merge, so the array waits for exactly what each of
    its jobs waited for; one-job batches are never blocked by each other's jobs then (a job
    and its blocker have different dependencies). The array takes the place of its first
    member; edges to members point to the array. Groups with `job_arrays: false` keep theirs.
    """
    groups = config.groups_by_name()
    buckets: dict[tuple[str, tuple[str, ...]], list[Batch]] = {}
    for batch in plan.batches:
        if len(batch.jobs) == 1 and groups[batch.group].batching.job_arrays:
            buckets.setdefault((batch.group, batch.depends_on), []).append(batch)
    renamed: dict[str, str] = {}
    arrays: dict[str, Batch] = {}  # first member's name -> its array
    next_index: dict[str, int] = {}
    for (group, depends_on), members in buckets.items():
        if len(members) < 2:
            continue
        for first in range(0, len(members), ARRAY_MAX):
            chunk = members[first : first + ARRAY_MAX]
            index = next_index.get(group, 0)
            next_index[group] = index + 1
            name = array_name(group, index)
            arrays[chunk[0].name] = Batch(
                name=name,
                group=group,
                jobs=tuple(b.jobs[0] for b in chunk),
                depends_on=depends_on,
                array=True,
            )
            renamed.update((b.name, name) for b in chunk)
    if not renamed:
        return plan
    batches = []
    for batch in plan.batches:
        if batch.name in arrays:
            batch = arrays[batch.name]
        elif batch.name in renamed:
            continue
        depends_on = tuple(sorted({renamed.get(d, d) for d in batch.depends_on}))
        batches.append(replace(batch, depends_on=depends_on))
    batch_of = {job: renamed.get(name, name) for job, name in plan.batch_of.items()}
    return BatchPlan(batches=tuple(batches), batch_of=batch_of)
