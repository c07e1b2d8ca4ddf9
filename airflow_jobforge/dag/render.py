"""JobConfiguration -> Render: every value the factory puts on its tasks, as plain data.

Why a separate step: in Airflow 3 each task's worker re-parses the DAG file. Validating a
100,000-job config, planning its batches and building each batch's spec dict costs seconds;
creating ~600 operators from ready values costs a fraction of that. So the expensive part is
a pure function of the config (and `job_tasks`) whose result `render_cache` keeps on disk,
and the factory only turns a Render into operators — the cached and the fresh path build the
very same tasks, because both go through `render_config`.

Imports no Airflow, so it is tested (and cached) without it.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field, fields, replace
from typing import Any

from airflow_jobforge.config import JobConfiguration, ensure_valid
from airflow_jobforge.errors import ConfigError, Problem
from airflow_jobforge.planning.planner import batch_spec, merge_arrays, plan_batches

JOB_TASKS_AUTO_MAX = 100
MAX_TASK_ID = 250


def _unpacked(obj: Any, name: str) -> Any:
    """The value of field `name`, unpickled (and kept) on first read when the render cache
    stored it as a pickle of its own."""
    data = getattr(obj, name)
    if isinstance(data, bytes):
        data = pickle.loads(data)  # written by render_cache into a directory only we own
        object.__setattr__(obj, name, data)
    return data


def _packed(value: Any) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _values(obj: Any) -> tuple[Any, ...]:
    """Every field's value, unpickled: what equality compares, packed or not."""
    return tuple(_unpacked(obj, f.name) for f in fields(obj))


@dataclass(frozen=True, eq=False)
class BatchRender:
    """One batch's tasks: `submit_<index>`, `wait_<index>`, then its result task(s)."""

    name: str
    group: str
    index: str
    jobs_data: tuple[str, ...] | bytes
    """The batch's job names, read through `jobs`; a pickle until first read, as `spec_data`:
    a worker that runs a batch's task needs none of the other batches' names (a 100,000-job
    config's names are 1 MB of pickle, ~10 ms of every task execution)."""
    depends_on: tuple[str, ...]
    spec_data: dict[str, Any] | bytes = field(repr=False)
    """The batch file's content (`BatchSpec.to_dict`), read through `spec`. From the render
    cache it is that dict's pickle until first read: a worker runs one task of one batch, so
    it unpickles 1,000 job specs instead of a 100,000-job config's all (0.06 s of CPU per
    task execution, ~25 CPU-s of a 2-CPU machine over a 100-batch run)."""
    slurm: dict[str, Any]
    container: dict[str, Any] | None
    retry: dict[str, Any] | None
    """The group's retry-with-more-resources rule, if any."""
    job_docs: tuple[str, ...] | None
    """One doc per job when the batch reports per job (`job_<name>` tasks), else None."""
    results_doc: str | None
    """The `results_<index>` task's doc when the batch reports as one task, else None."""
    array: bool = False
    """Submitted as one SLURM job array, a task per job (merged one-job batches)."""
    array_throttle: int | None = None
    """At most this many of the array's tasks at once: the group's max_concurrent_batches."""
    max_concurrent_batches: int | None = None
    """The group's limit of batches in the queue at once (`slurm.limits`), if any."""

    @property
    def spec(self) -> dict[str, Any]:
        return _unpacked(self, "spec_data")

    @property
    def jobs(self) -> tuple[str, ...]:
        return _unpacked(self, "jobs_data")

    def packed(self) -> BatchRender:
        """This batch with its spec and job names pickled, as the render cache stores it."""
        return replace(self, spec_data=_packed(self.spec), jobs_data=_packed(self.jobs))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BatchRender) and _values(self) == _values(other)

    __hash__ = None  # type: ignore[assignment]  # holds dicts, as the generated one would


@dataclass(frozen=True, eq=False)
class Render:
    jobs_data: tuple[str, ...] | bytes
    """Every job's name, read through `jobs` (a pickle until then, as in `BatchRender`)."""
    n_jobs: int
    n_groups: int
    batches: tuple[BatchRender, ...]
    job_edges: tuple[tuple[str, str], ...]
    """(blocker, job) between `job_<name>` tasks; only when every job has its own task."""
    setup_command: str | None
    teardown_command: str | None
    post: dict[str, Any] | None
    """`module`, `class_name` and `data` of the post-process class, if any."""
    config_file: str | None = None
    """The file the config came from: the run manifest names it for `results resubmit`."""

    @property
    def jobs(self) -> tuple[str, ...]:
        return _unpacked(self, "jobs_data")

    def packed(self) -> Render:
        """The render as the cache stores it: job names and batch specs pickled apart."""
        return replace(
            self,
            jobs_data=_packed(self.jobs),
            batches=tuple(batch.packed() for batch in self.batches),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Render) and _values(self) == _values(other)

    __hash__ = None  # type: ignore[assignment]  # holds dicts, as the generated one would


DOC_JOBS = 20
"""Jobs a results task's doc lists: the doc is serialized with the DAG, which the
dag-processor re-serializes at every parse (1,000 lines per batch made a 100-batch DAG 3 MB)."""


def results_doc(batch: str, jobs: list[tuple[str, str]]) -> str:
    lines = [f"- `{name}`: `{command[:80]}`" for name, command in jobs[:DOC_JOBS]]
    if len(jobs) > DOC_JOBS:
        lines.append(f"- … and {len(jobs) - DOC_JOBS} more")
    return f"Results of batch `{batch}` ({len(jobs)} jobs):\n\n" + "\n".join(lines)


def job_doc(name: str, group: str | None, blocked_by: tuple[str, ...], command: str) -> str:
    blocked = ", ".join(f"`{b}`" for b in blocked_by) or "none"
    return (
        f"**Job `{name}`** — submission group `{group}`; "
        f"blocked by: {blocked}\n\n```bash\n{command}\n```"
    )


def render_config(
    config: JobConfiguration,
    *,
    job_tasks: bool | None = None,
    file: str | None = None,
    validated: bool = False,
) -> Render:
    """Plan `config` and compute every task's values. `validated=True` skips the relation
    checks for a config `load_config` just validated (on 100,000 jobs they take a second)."""
    if not validated:
        ensure_valid(config, file=file)
    plan = merge_arrays(plan_batches(config), config)
    jobs = config.jobs_by_name()
    per_job = len(jobs) <= JOB_TASKS_AUTO_MAX if job_tasks is None else job_tasks
    check_task_ids(config, file)
    groups = config.groups_by_name()
    batches = []
    for batch in plan.batches:
        group = groups[batch.group]
        own_tasks = per_job or len(batch.jobs) == 1
        throttle = group.max_concurrent_batches if batch.array else None
        batches.append(
            BatchRender(
                name=batch.name,
                group=batch.group,
                index=batch.name.rsplit("-", 1)[1],
                jobs_data=batch.jobs,
                depends_on=batch.depends_on,
                spec_data=batch_spec(config, plan, batch, jobs).to_dict(),
                slurm=group.slurm.model_dump(mode="json"),
                container=group.container.model_dump(mode="json") if group.container else None,
                retry=group.retry.model_dump(mode="json") if group.retry else None,
                max_concurrent_batches=group.max_concurrent_batches,
                job_docs=tuple(
                    job_doc(n, jobs[n].submission_group, jobs[n].blocked_by, jobs[n].command)
                    for n in batch.jobs
                )
                if own_tasks
                else None,
                results_doc=None
                if own_tasks
                else results_doc(batch.name, [(n, jobs[n].command) for n in batch.jobs]),
                array=batch.array,
                array_throttle=throttle,
            )
        )
    post = config.job_post_process_config
    return Render(
        jobs_data=tuple(jobs),
        n_jobs=len(jobs),
        n_groups=len(config.submission_groups),
        batches=tuple(batches),
        job_edges=tuple((b, job.name) for job in config.jobs for b in job.blocked_by)
        if per_job
        else (),
        setup_command=config.setup_command,
        teardown_command=config.teardown_command,
        post={"module": post.module, "class_name": post.class_name, "data": post.data}
        if post is not None
        else None,
        config_file=os.path.abspath(file) if file else None,
    )


def check_task_ids(config: JobConfiguration, file: str | None) -> None:
    """Airflow refuses task ids over 250 characters: say which job, at load time."""
    problems = []
    for job in config.jobs:
        task_id = f"{job.submission_group}.post_{job.name}"
        if len(task_id) > MAX_TASK_ID:
            problems.append(
                Problem(
                    f"job {job.name!r}",
                    f"group + job name make a task id longer than {MAX_TASK_ID} characters",
                )
            )
    if problems:
        raise ConfigError(problems, file=file)
