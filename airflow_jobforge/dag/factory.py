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

import logging
from dataclasses import asdict, dataclass
from typing import Any

from airflow.sdk import DAG, Param, TaskGroup, get_parsing_context
from airflow.sdk.definitions.taskgroup import TaskGroup as _TaskGroup

from airflow_jobforge.config import JobConfiguration
from airflow_jobforge.dag.options import DagOptions
from airflow_jobforge.dag.render import Render, render_config
from airflow_jobforge.hooks.slurm import ClusterSettings
from airflow_jobforge.operators.command import JobForgeCommandOperator
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
class Wiring:
    """What every task of one rendered config shares: the options, and the cluster settings
    (plain data) that each operator hands to its hook."""

    options: DagOptions
    cluster: dict[str, Any]
    stage: str | None = None

    @classmethod
    def of(cls, options: DagOptions, stage: str | None = None) -> Wiring:
        settings = ClusterSettings(
            backend=options.backend,
            slurm_conn_id=options.slurm_conn_id,
            ssh_conn_id=options.ssh_conn_id,
            python=options.python,
            pythonpath=options.pythonpath,
            submit_rate_limit=check_rate(options.submit_rate_limit),
        )
        return cls(options, asdict(settings), stage)

    @property
    def common(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "output_dir": self.options.output_dir, "stage": self.stage}


@dataclass
class _BatchTasks:
    submit: Any
    wait: Any
    tails: list[Any]  # the batch's last tasks: result tasks, then post-process tasks


def add_render_tasks(
    render: Render, options: DagOptions, *, file: str | None = None, stage: str | None = None
) -> tuple[list[Any], list[Any]]:
    """Create the tasks of a rendered config; only operator construction happens here.

    Steps: each batch's tasks inside its group's TaskGroup, the edges between batches and
    between per-job tasks, then the run's ends (summary, setup, teardown). A worker that
    runs one task gets only that task's batch (or the run's ends): see `_worker_batch`.
    `stage`: the pipeline stage these tasks run (its own run dir and run key)."""
    options.check(file)
    wiring = Wiring.of(options, stage)
    only = _worker_batch(render)
    if only is not None:
        return _add_for_worker(render, wiring, only)
    setup = _setup_task(render, wiring)
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


def _setup_task(render: Render, wiring: Wiring) -> Any:
    """The config's setup command as Airflow's setup task, if it has one."""
    if not render.setup_command:
        return None
    return JobForgeCommandOperator(
        task_id="setup", command=render.setup_command, cluster=wiring.cluster, stage=wiring.stage
    ).as_setup()


def _add_for_worker(render: Render, wiring: Wiring, only: str) -> tuple[list[Any], list[Any]]:
    """`only`'s tasks in their group, or (for "") the run's ends alone, without edges."""
    if not only:
        return _add_run_ends(render, wiring, _setup_task(render, wiring), [], [])
    batch = next(b for b in render.batches if b.name == only)
    with TaskGroup(group_id=batch.group):
        tasks = _batch_tasks(batch, render.post, wiring, {})
    return [tasks.submit], tasks.tails


def _batch_tasks(
    batch: Any, post: dict[str, Any] | None, wiring: Wiring, job_task: dict[str, Any]
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
        stage=wiring.stage,
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
    batch: Any, submit: Any, wait: Any, wiring: Wiring, job_task: dict[str, Any]
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
    batch: Any, post: dict[str, Any], wiring: Wiring, job_task: dict[str, Any]
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
    render: Render, wiring: Wiring, setup: Any, first: list[Any], last: list[Any]
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
            stage=wiring.stage,
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
