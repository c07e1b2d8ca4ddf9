"""JobConfiguration -> Airflow DAG (or TaskGroup to embed in your own DAG).

Two steps: `dag.render` computes every task's values from the config (pure, cached on disk for
config files by `render_cache`), then this module creates a few operators per batch. Per batch:
`submit_NNNN >> wait_NNNN >> results_NNNN` inside a TaskGroup per submission group. Jobs get
their own task (`job_<name>`) only where it pays: small configs (<= JOB_TASKS_AUTO_MAX jobs,
or `job_tasks=True`) and one-job batches; otherwise a batch's results task reports all its
jobs (log table + XCom), because every task instance costs a task execution (~50 ms in
`dag.test()`, seconds on a busy scheduler). Post-process tasks are per job when configured.

`blocked_by` across batches becomes `wait_A >> submit_B` with trigger rule ALL_DONE: B starts
when A ended, whatever its jobs did; the node runner then cancels B's jobs flagged
`cancel_on_blocking_job_failure` whose blockers did not succeed (from A's result records).
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

from airflow.sdk import DAG, Param, TaskGroup, get_parsing_context
from airflow.sdk.definitions.taskgroup import TaskGroup as _TaskGroup

from airflow_jobforge.config import JobConfiguration
from airflow_jobforge.dag.options import DAG_ID_PREFIX, DagOptions, dag_id_for
from airflow_jobforge.dag.render import Render, render_config
from airflow_jobforge.dag.render_cache import render_file
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.hooks.slurm import ClusterSettings
from airflow_jobforge.operators.command import JobForgeCommandOperator
from airflow_jobforge.operators.config_error import ConfigErrorOperator
from airflow_jobforge.operators.post_process import JobPostProcessOperator
from airflow_jobforge.operators.results import (
    BatchResultOperator,
    JobResultOperator,
    RunSummaryOperator,
)
from airflow_jobforge.operators.submit import SlurmSubmitOperator
from airflow_jobforge.sensors.slurm import SlurmJobSensor
from airflow_jobforge.slurm.limits import check_rate

log = logging.getLogger(__name__)

ALL_DONE = "all_done"


def dag_params() -> dict[str, Param]:
    """What a UI trigger may override for one run."""
    text = ["null", "string"]
    return {
        "jobs": Param(
            [],
            type="array",
            items={"type": "string"},
            description="Run only these jobs (names or globs); empty: all",
        ),
        "partition": Param(None, type=text, description="Override every group's partition"),
        "account": Param(None, type=text, description="Override every group's account"),
        "qos": Param(None, type=text, description="Override every group's qos"),
        "walltime": Param(None, type=text, description="Override every group's walltime"),
        "rerun_of": Param(
            None,
            type=text,
            description="Run id of an earlier run: run only its jobs that did not succeed",
        ),
        "rerun": Param(
            ["failed", "missing"],
            type="array",
            items={"type": "string", "enum": ["failed", "missing", "canceled"]},
            description="With rerun_of: which outcomes of that run run again",
        ),
    }


def add_job_tasks(
    config: JobConfiguration, options: DagOptions, *, file: str | None = None
) -> tuple[list[Any], list[Any]]:
    """Create the tasks of `config` in the current DAG/TaskGroup context.

    Returns (first tasks, last tasks) so callers can wire the block into their own DAG.
    """
    render = render_config(config, job_tasks=options.job_tasks, file=file)
    return add_render_tasks(render, options, file=file)


@dataclass(frozen=True)
class _Wiring:
    """What every task of one rendered config shares: the options, and the cluster settings
    (plain data) that each operator hands to its hook."""

    options: DagOptions
    cluster: dict[str, Any]

    @classmethod
    def of(cls, options: DagOptions) -> _Wiring:
        settings = ClusterSettings(
            backend=options.backend,
            slurm_conn_id=options.slurm_conn_id,
            ssh_conn_id=options.ssh_conn_id,
            python=options.python,
            pythonpath=options.pythonpath,
            submit_rate_limit=check_rate(options.submit_rate_limit),
        )
        return cls(options, asdict(settings))

    @property
    def common(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "output_dir": self.options.output_dir}


@dataclass
class _BatchTasks:
    submit: Any
    wait: Any
    tails: list[Any]  # the batch's last tasks: result tasks, then post-process tasks


def add_render_tasks(
    render: Render, options: DagOptions, *, file: str | None = None
) -> tuple[list[Any], list[Any]]:
    """Create the tasks of a rendered config; only operator construction happens here.

    Steps: each batch's tasks inside its group's TaskGroup, the edges between batches and
    between per-job tasks, then the run's ends (summary, setup, teardown). A worker that
    runs one task gets only that task's batch (or the run's ends): see `_worker_batch`."""
    options.check(file)
    wiring = _Wiring.of(options)
    only = _worker_batch(render)
    if only is not None:
        return _add_for_worker(render, wiring, only)
    setup = None
    if render.setup_command:
        setup = JobForgeCommandOperator(
            task_id="setup", command=render.setup_command, cluster=wiring.cluster
        ).as_setup()
    groups: dict[str, _TaskGroup] = {}
    built: dict[str, _BatchTasks] = {}
    job_task: dict[str, Any] = {}
    for batch in render.batches:
        group = groups.get(batch.group)
        if group is None:
            group = groups[batch.group] = TaskGroup(group_id=batch.group)
        with group:
            built[batch.name] = _batch_tasks(batch, render.post, wiring, job_task)
    _wire_dependencies(render, built, job_task)
    first = [built[b.name].submit for b in render.batches if not b.depends_on]
    last = [task for tasks in built.values() for task in tasks.tails]
    return _add_run_ends(render, wiring, setup, first, last)


def _worker_batch(render: Render) -> str | None:
    """The batch whose task this process's worker runs ("" for the run's ends), or None: build
    everything (the dag-processor, dag.test, tests).

    Airflow 3 re-parses the DAG file for every task it runs, and a 100-batch DAG's 300
    operators cost ~0.15 s of CPU to build (0.5 s while each task copied the DAG's params):
    on a 2-CPU machine running 100,000 jobs through ~370 task executions, ~55 CPU-s. The
    worker looks up its one task by id and resolves XComs by task id, so the rest of the DAG
    is not needed there."""
    task_id = get_parsing_context().task_id
    if not task_id:
        return None
    for batch in render.batches:
        for kind in ("submit", "wait", "results"):
            own = f"{batch.group}.{kind}_{batch.index}"
            if task_id == own or task_id.endswith("." + own):
                return batch.name
    # A job's own task: `[outer.]<group>.job_<name>` (or post_); job names may hold dots.
    for kind in ("job_", "post_"):
        at = task_id.find("." + kind)
        while at >= 0:
            group, name = task_id[:at].rsplit(".", 1)[-1], task_id[at + 1 + len(kind) :]
            for batch in render.batches:
                if batch.group == group and name in batch.jobs:
                    return batch.name
            at = task_id.find("." + kind, at + 1)
    return ""


def _add_for_worker(render: Render, wiring: _Wiring, only: str) -> tuple[list[Any], list[Any]]:
    """`only`'s tasks in their group, or (for "") the run's ends alone, without edges."""
    if not only:
        setup = None
        if render.setup_command:
            setup = JobForgeCommandOperator(
                task_id="setup", command=render.setup_command, cluster=wiring.cluster
            ).as_setup()
        return _add_run_ends(render, wiring, setup, [], [])
    batch = next(b for b in render.batches if b.name == only)
    with TaskGroup(group_id=batch.group):
        tasks = _batch_tasks(batch, render.post, wiring, {})
    return [tasks.submit], tasks.tails


def _batch_tasks(
    batch: Any, post: dict[str, Any] | None, wiring: _Wiring, job_task: dict[str, Any]
) -> _BatchTasks:
    """submit >> wait >> result task(s) [>> post-process tasks]; records in `job_task` which
    task reports each job."""
    submit = SlurmSubmitOperator(
        task_id=f"submit_{batch.index}",
        batch=batch.spec,
        slurm=batch.slurm,
        container=batch.container,
        workdir=wiring.options.workdir,
        max_concurrent_batches=batch.max_concurrent_batches,
        queue_poll_interval=max(wiring.options.poll_interval, 2.0),
        trigger_rule=ALL_DONE if batch.depends_on else "all_success",
        doc_md=f"Submits batch `{batch.name}`: {len(batch.jobs)} jobs"
        + (", as one SLURM job array (a task per job)." if batch.array else "."),
        array=batch.array,
        array_throttle=batch.array_throttle,
        **wiring.common,
    )
    wait = SlurmJobSensor(
        task_id=f"wait_{batch.index}",
        submit_task_id=submit.task_id,
        cluster=wiring.cluster,
        deferrable=wiring.options.deferrable,
        poll_interval=wiring.options.poll_interval,
        max_resubmits=wiring.options.node_failure_retries,
        retry=batch.retry,
        batch=batch.spec,
        doc_md=f"Waits for batch `{batch.name}`; resubmits it after NODE_FAIL, "
        "BOOT_FAIL or PREEMPTED.",
    )
    submit >> wait
    tails = _result_tasks(batch, submit, wait, wiring, job_task)
    wait >> tails
    if post is not None:
        tails = tails + _post_tasks(batch, post, wiring, job_task)
    return _BatchTasks(submit, wait, tails)


def _result_tasks(
    batch: Any, submit: Any, wait: Any, wiring: _Wiring, job_task: dict[str, Any]
) -> list[Any]:
    """A `job_<name>` task per job where the render asks for them, else one `results_NNNN`.
    They read the records the wait task pushed (no login to the cluster for them)."""
    common = {
        "batch": batch.name,
        "submit_task_id": submit.task_id,
        "wait_task_id": wait.task_id,
        "batch_spec": batch.spec,
        "poll_interval": wiring.options.poll_interval,
        "trigger_rule": ALL_DONE,
        **wiring.common,
    }
    if batch.job_docs is None:
        results = BatchResultOperator(
            task_id=f"results_{batch.index}",
            jobs=list(batch.jobs),
            doc_md=batch.results_doc,
            **common,
        )
        job_task.update(dict.fromkeys(batch.jobs, results))
        return [results]
    tasks = []
    for name, doc in zip(batch.jobs, batch.job_docs, strict=True):
        job_task[name] = JobResultOperator(task_id=f"job_{name}", job=name, doc_md=doc, **common)
        tasks.append(job_task[name])
    return tasks


def _post_tasks(
    batch: Any, post: dict[str, Any], wiring: _Wiring, job_task: dict[str, Any]
) -> list[Any]:
    posts = []
    for name in batch.jobs:
        task = JobPostProcessOperator(
            task_id=f"post_{name}",
            job=name,
            module=post["module"],
            class_name=post["class_name"],
            data=post["data"],
            trigger_rule=ALL_DONE,
            doc_md=f"Post-process of job `{name}`",
            **wiring.common,
        )
        job_task[name] >> task
        posts.append(task)
    return posts


def _wire_dependencies(
    render: Render, built: dict[str, _BatchTasks], job_task: dict[str, Any]
) -> None:
    """wait_A >> submit_B for batch dependencies; blocker >> job for per-job result tasks."""
    for batch in render.batches:
        for dep in batch.depends_on:
            built[dep].wait >> built[batch.name].submit
    for blocker, name in render.job_edges:
        job_task[blocker] >> job_task[name]


def _add_run_ends(
    render: Render, wiring: _Wiring, setup: Any, first: list[Any], last: list[Any]
) -> tuple[list[Any], list[Any]]:
    """The summary after everything, and the config's setup/teardown as Airflow's."""
    summary = RunSummaryOperator(
        task_id="summary",
        batches={b.name: list(b.jobs) for b in render.batches},
        config_file=render.config_file,
        batch="all",
        submit_task_id="",
        trigger_rule=ALL_DONE,
        doc_md="Summary of the run: successful, failed, canceled, missing.",
        **wiring.common,
    )
    last >> summary
    last = [summary]
    if setup is not None:
        setup >> first  # the other batches follow these; Airflow wants ALL_SUCCESS after a setup
        first = [setup]
    if render.teardown_command:
        teardown = JobForgeCommandOperator(
            task_id="teardown",
            command=render.teardown_command,
            cluster=wiring.cluster,
            trigger_rule=ALL_DONE,
        )
        if setup is not None:
            teardown.as_teardown(setups=setup)
        last >> teardown
        last = [teardown]
    return first, last


def build_dag(
    config: JobConfiguration,
    dag_id: str,
    options: DagOptions | None = None,
    *,
    file: str | None = None,
    **kwargs: Any,
) -> DAG:
    """The config's DAG.

    :param config: the job configuration (validated here: every problem at once)
    :param dag_id: the DAG's id
    :param options: how the tasks run (`DagOptions`); its fields may also be given as
        keyword arguments (`backend="slurm"`), which win
    :param file: the config's path, named in errors and in the DAG's docs
    :param kwargs: `DagOptions` fields, then `build_render_dag`'s (schedule, any `DAG(...)`
        argument)
    """
    options = DagOptions.take(options, kwargs)
    render = render_config(config, job_tasks=options.job_tasks, file=file)
    return build_render_dag(render, dag_id, options, file=file, **kwargs)


def build_render_dag(
    render: Render,
    dag_id: str,
    options: DagOptions | None = None,
    *,
    schedule: Any = None,
    file: str | None = None,
    **dag_kwargs: Any,
) -> DAG:
    """The DAG of a rendered config.

    :param render: the config rendered by `render.render_config` (or the render cache)
    :param dag_id: the DAG's id
    :param options: how the tasks run (`DagOptions`); default output dir
        `$AIRFLOW_HOME/jobforge-output/<dag_id>`
    :param schedule: Airflow schedule; None: triggered runs only
    :param file: the config's path, named in errors and in the DAG's docs
    :param dag_kwargs: more `DAG(...)` arguments; default `catchup=False`,
        `max_active_runs=1`, `tags=["jobforge"]`; `params` add to (or replace) those of
        `dag_params()`
    """
    # Checked before the DAG exists: a DAG file's import keeps every DAG created, so a
    # half-built one would compete with load_dags' placeholder of the same id.
    options = (options or DagOptions()).for_dag(dag_id, file)
    dag_kwargs.setdefault("catchup", False)
    dag_kwargs.setdefault("tags", ["jobforge"])
    dag_kwargs.setdefault("max_active_runs", 1)
    dag_kwargs.setdefault(
        "doc_md",
        f"jobforge: {render.n_jobs} jobs in {render.n_groups} submission "
        f"group(s), backend `{options.backend}`" + (f", from `{file}`" if file else ""),
    )
    params = {**dag_params(), **(dag_kwargs.pop("params", None) or {})}
    dag = DAG(dag_id, schedule=schedule, **dag_kwargs)
    with dag:
        add_render_tasks(render, options, file=file)
    # Set once the tasks exist: a task created under DAG params keeps a copy of its own,
    # which the serialized DAG stores per task (520 of 730 KB for 100 batches) and Airflow
    # re-validates against the params' JSON schemas at each serialization (1.5 s of each
    # dag-processor parse). Tasks read them from the DAG at run time all the same.
    dag.params = params
    return dag


class JobForgeTaskGroup(TaskGroup):
    """Embed a config's tasks in your own DAG: `with JobForgeTaskGroup("sims", config, ...)`.

    The DAG should declare the params of `dag_params()` for run-time overrides to apply.

    :param group_id: the TaskGroup's id
    :param config: the job configuration
    :param options: how the tasks run (`DagOptions`; `output_dir` is required)
    :param file: the config's path, named in errors
    :param kwargs: `DagOptions` fields, then `TaskGroup(...)` arguments (tooltip, ...)
    """

    def __init__(
        self,
        group_id: str,
        config: JobConfiguration,
        options: DagOptions | None = None,
        *,
        file: str | None = None,
        **kwargs: Any,
    ) -> None:
        options = DagOptions.take(options, kwargs)
        super().__init__(group_id=group_id, **kwargs)
        with self:
            add_job_tasks(config, options, file=file)


def config_paths(path_or_glob: str | os.PathLike[str]) -> list[str]:
    pattern = str(path_or_glob)
    return sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]


def load_dags(
    path_or_glob: str | os.PathLike[str],
    namespace: MutableMapping[str, Any],
    options: DagOptions | None = None,
    *,
    dag_id_prefix: str = DAG_ID_PREFIX,
    cache: bool = True,
    **kwargs: Any,
) -> dict[str, DAG]:
    """One DAG per config file matching `path_or_glob` (`<dag_id_prefix><file stem>`), put in
    `namespace` (a DAG file's globals()), all with the same options.

    A task's worker re-parses the whole DAG file and says which DAG it wants
    (`get_parsing_context()`): then only that config is read and built, and none when no
    config of this call has that id, as Airflow documents for dynamic DAGs. Without a
    context (the dag-processor, tests) every config is built. Renders come from
    `render_cache` (`cache=False` skips it), so a warm worker never re-validates a config.

    A broken config becomes a failing placeholder DAG of its own name, shown as "BROKEN
    CONFIG <dag id>", its error in the description, docs and only task; it never hides the
    others. It is not an Airflow import error of this file on purpose: Airflow 3.3 marks
    every DAG of a file with an import error stale (`_update_import_errors`): gone from the
    DAG list, never scheduled, refused when triggered. `raise_config_errors` in a DAG file of
    its own makes broken configs import errors of that file instead.

    :param path_or_glob: a config file, or a glob of them (`/configs/*.json`)
    :param namespace: where the DAGs go, the DAG file's `globals()`
    :param options: how the tasks run (`DagOptions`)
    :param dag_id_prefix: each DAG's id is this prefix plus the file's stem
    :param cache: use the on-disk render cache (`$JOBFORGE_CACHE_DIR`)
    :param kwargs: `DagOptions` fields, then `build_render_dag`'s (schedule, any `DAG(...)`
        argument)
    """
    options = DagOptions.take(options, kwargs)
    wanted = get_parsing_context().dag_id
    dags = {}
    for path in config_paths(path_or_glob):
        dag_id = dag_id_for(path, dag_id_prefix)
        if wanted is not None and dag_id != wanted:
            continue
        rendered = render_file(path, job_tasks=options.job_tasks, use_cache=cache)
        dag = None
        error = rendered.error
        if rendered.render is not None:
            try:
                dag = build_render_dag(rendered.render, dag_id, options, file=path, **dict(kwargs))
            except JobForgeError as exc:
                error = exc.one_line()
        if dag is None:
            assert error is not None
            log.error("jobforge config %s: %s", path, error)
            dag = _broken_dag(dag_id, path, error)
        dags[dag_id] = namespace[dag_id] = dag
    return dags


def config_errors(
    path_or_glob: str | os.PathLike[str], *, job_tasks: bool | None = None
) -> list[str]:
    """The error of each broken config matching `path_or_glob` (one line per config)."""
    errors = []
    for path in config_paths(path_or_glob):
        rendered = render_file(path, job_tasks=job_tasks)
        if rendered.error is not None:
            errors.append(rendered.error)
    return errors


def raise_config_errors(
    path_or_glob: str | os.PathLike[str], *, job_tasks: bool | None = None
) -> None:
    """Fail when a config matching `path_or_glob` is broken: call it from a DAG file that
    defines no DAG, and the dag-processor records the error as that file's import error —
    the UI's import-errors banner, `GET /api/v2/importErrors`, `airflow dags
    list-import-errors` — naming each broken config, job and reason.

    Why a file of its own: Airflow 3.3 marks every DAG of a file that has an import error
    stale, so raising in the file of `load_dags` would hide and stop its good DAGs.
    Cheap: the same cached renders as `load_dags`; workers never parse a file without DAGs.
    Airflow's discovery safe mode only parses files that contain "airflow" and "dag": say
    "DAG" in that file's docstring.

    :param path_or_glob: the same config file or glob as the `load_dags` call
    :param job_tasks: as given to `load_dags`
    """
    errors = config_errors(path_or_glob, job_tasks=job_tasks)
    if errors:
        n = len(errors)
        raise JobForgeError(
            f"{n} broken jobforge config{'s' if n != 1 else ''}:\n" + "\n".join(errors)
        )


def _broken_dag(dag_id: str, path: str, error: str) -> DAG:
    first_line = error.splitlines()[0]
    with DAG(
        dag_id,
        schedule=None,
        catchup=False,
        tags=["jobforge", "config-error"],
        dag_display_name=f"BROKEN CONFIG {dag_id}",
        description=f"BROKEN CONFIG {path}: {first_line}"[:1000],
        doc_md=f"### Broken jobforge config `{path}`\n\n```\n{error}\n```",
    ) as dag:
        ConfigErrorOperator(task_id="config_error", error=error)
    return dag
