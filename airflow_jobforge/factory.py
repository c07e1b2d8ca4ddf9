"""JobConfiguration -> Airflow DAG (or TaskGroup to embed in your own DAG).

Rendering is pure and cheap: plan batches, then create a few tasks per batch. Per batch:
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
import re
from collections.abc import MutableMapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, TaskGroup
from airflow.sdk.definitions.taskgroup import TaskGroup as _TaskGroup

from airflow_jobforge.config import JobConfiguration, ensure_valid, load_config
from airflow_jobforge.errors import ConfigError, JobForgeError, Problem
from airflow_jobforge.hooks.slurm import ClusterSettings
from airflow_jobforge.operators.command import JobForgeCommandOperator
from airflow_jobforge.operators.post_process import JobPostProcessOperator
from airflow_jobforge.operators.results import (
    BatchResultOperator,
    JobResultOperator,
    RunSummaryOperator,
)
from airflow_jobforge.operators.submit import SlurmSubmitOperator
from airflow_jobforge.planning import batch_spec, plan_batches
from airflow_jobforge.sensors.slurm import SlurmJobSensor

log = logging.getLogger(__name__)

JOB_TASKS_AUTO_MAX = 100
ALL_DONE = "all_done"
MAX_TASK_ID = 250


def default_output_dir(dag_id: str) -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.join(os.path.abspath(home), "jobforge-output", dag_id)


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
    }


def _job_doc(job: Any) -> str:
    blocked = ", ".join(f"`{b}`" for b in job.blocked_by) or "none"
    return (
        f"**Job `{job.name}`** — submission group `{job.submission_group}`; "
        f"blocked by: {blocked}\n\n```bash\n{job.command}\n```"
    )


def add_job_tasks(
    config: JobConfiguration,
    *,
    backend: str = "local",
    slurm_conn_id: str | None = None,
    ssh_conn_id: str | None = None,
    output_dir: str,
    job_tasks: bool | None = None,
    python: str | None = None,
    pythonpath: str | None = None,
    workdir: str | None = None,
    poll_interval: float = 2.0,
    deferrable: bool = True,
    node_failure_retries: int = 2,
    file: str | None = None,
) -> tuple[list[Any], list[Any]]:
    """Create the tasks of `config` in the current DAG/TaskGroup context.

    Returns (first tasks, last tasks) so callers can wire the block into their own DAG.
    """
    ensure_valid(config, file=file)
    if backend == "slurm" and ssh_conn_id and not os.path.isabs(output_dir):
        raise JobForgeError("output_dir must be an absolute path on the cluster", file=file)
    settings = ClusterSettings(
        backend=backend,
        slurm_conn_id=slurm_conn_id,  # type: ignore[arg-type]
        ssh_conn_id=ssh_conn_id,
        python=python,
        pythonpath=pythonpath,
    )
    cluster = asdict(settings)
    plan = plan_batches(config)
    jobs = config.jobs_by_name()
    per_job = len(jobs) <= JOB_TASKS_AUTO_MAX if job_tasks is None else job_tasks
    post = config.job_post_process_config
    _check_task_ids(config, per_job, file)

    common = {"cluster": cluster, "output_dir": output_dir}
    setup = teardown = None
    if config.setup_command:
        setup = JobForgeCommandOperator(
            task_id="setup", command=config.setup_command, cluster=cluster
        ).as_setup()
    first: list[Any] = []
    last: list[Any] = []
    waits: dict[str, Any] = {}
    submits: dict[str, Any] = {}
    job_task: dict[str, Any] = {}
    groups: dict[str, _TaskGroup] = {}
    for batch in plan.batches:
        group = groups.get(batch.group)
        if group is None:
            group = groups[batch.group] = TaskGroup(group_id=batch.group)
        index = batch.name.rsplit("-", 1)[1]
        sub_cfg = config.group(batch.group)
        with group:
            submit = SlurmSubmitOperator(
                task_id=f"submit_{index}",
                batch=batch_spec(config, plan, batch, jobs).to_dict(),
                slurm=sub_cfg.slurm.model_dump(mode="json"),
                container=sub_cfg.container.model_dump(mode="json") if sub_cfg.container else None,
                workdir=workdir,
                trigger_rule=ALL_DONE if batch.depends_on else "all_success",
                doc_md=f"Submits batch `{batch.name}`: {len(batch.jobs)} jobs.",
                **common,
            )
            wait = SlurmJobSensor(
                task_id=f"wait_{index}",
                submit_task_id=submit.task_id,
                cluster=cluster,
                deferrable=deferrable,
                poll_interval=poll_interval,
                retries=node_failure_retries,
                retry_delay=5,
                doc_md=f"Waits for batch `{batch.name}`; resubmits it after NODE_FAIL, "
                "BOOT_FAIL or PREEMPTED.",
            )
            submit >> wait
            results_common = {
                "batch": batch.name,
                "submit_task_id": submit.task_id,
                "poll_interval": poll_interval,
                "trigger_rule": ALL_DONE,
                **common,
            }
            if per_job or len(batch.jobs) == 1:
                tails = []
                for name in batch.jobs:
                    task = JobResultOperator(
                        task_id=f"job_{name}",
                        job=name,
                        doc_md=_job_doc(jobs[name]),
                        **results_common,
                    )
                    job_task[name] = task
                    tails.append(task)
                wait >> tails
            else:
                results = BatchResultOperator(
                    task_id=f"results_{index}",
                    jobs=list(batch.jobs),
                    doc_md=f"Results of batch `{batch.name}`:\n\n"
                    + "\n".join(f"- `{n}`: `{jobs[n].command[:80]}`" for n in batch.jobs),
                    **results_common,
                )
                wait >> results
                tails = [results]
                for name in batch.jobs:
                    job_task[name] = results
            if post is not None:
                posts = []
                for name in batch.jobs:
                    task = JobPostProcessOperator(
                        task_id=f"post_{name}",
                        job=name,
                        module=post.module,
                        class_name=post.class_name,
                        data=post.data,
                        trigger_rule=ALL_DONE,
                        doc_md=f"Post-process of job `{name}`",
                        **common,
                    )
                    job_task[name] >> task
                    posts.append(task)
                tails = tails + posts
        submits[batch.name] = submit
        waits[batch.name] = wait
        if not batch.depends_on:
            first.append(submit)
        last.extend(tails)

    for batch in plan.batches:
        for dep in batch.depends_on:
            waits[dep] >> submits[batch.name]
    if per_job:
        for name, job in jobs.items():
            for blocker in job.blocked_by:
                if job_task[blocker] is not job_task[name]:
                    job_task[blocker] >> job_task[name]

    summary = RunSummaryOperator(
        task_id="summary",
        jobs=list(jobs),
        batch="all",
        submit_task_id="",
        trigger_rule=ALL_DONE,
        doc_md="Summary of the run: successful, failed, canceled, missing.",
        **common,
    )
    last >> summary
    last = [summary]
    if setup is not None:
        setup >> first  # the other batches follow these; Airflow wants ALL_SUCCESS after a setup
        first = [setup]
    if config.teardown_command:
        teardown = JobForgeCommandOperator(
            task_id="teardown",
            command=config.teardown_command,
            cluster=cluster,
            trigger_rule=ALL_DONE,
        )
        if setup is not None:
            teardown.as_teardown(setups=setup)
        last >> teardown
        last = [teardown]
    return first, last


def _check_task_ids(config: JobConfiguration, per_job: bool, file: str | None) -> None:
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


def build_dag(
    config: JobConfiguration,
    dag_id: str,
    *,
    schedule: Any = None,
    backend: str = "local",
    slurm_conn_id: str | None = None,
    ssh_conn_id: str | None = None,
    output_dir: str | None = None,
    job_tasks: bool | None = None,
    python: str | None = None,
    pythonpath: str | None = None,
    workdir: str | None = None,
    poll_interval: float = 2.0,
    deferrable: bool = True,
    file: str | None = None,
    **dag_kwargs: Any,
) -> DAG:
    """The config's DAG. `dag_kwargs` go to `DAG(...)` (tags, default_args, start_date...)."""
    dag_kwargs.setdefault("catchup", False)
    dag_kwargs.setdefault("tags", ["jobforge"])
    dag_kwargs.setdefault("max_active_runs", 1)
    dag_kwargs.setdefault(
        "doc_md",
        f"jobforge: {len(config.jobs)} jobs in {len(config.submission_groups)} submission "
        f"group(s), backend `{backend}`" + (f", from `{file}`" if file else ""),
    )
    dag = DAG(dag_id, schedule=schedule, params=dag_params(), **dag_kwargs)
    with dag:
        add_job_tasks(
            config,
            backend=backend,
            slurm_conn_id=slurm_conn_id,
            ssh_conn_id=ssh_conn_id,
            output_dir=output_dir or default_output_dir(dag_id),
            job_tasks=job_tasks,
            python=python,
            pythonpath=pythonpath,
            workdir=workdir,
            poll_interval=poll_interval,
            deferrable=deferrable,
            file=file,
        )
    return dag


class JobForgeTaskGroup(TaskGroup):
    """Embed a config's tasks in your own DAG: `with JobForgeTaskGroup("sims", config, ...)`.

    The DAG should declare the params of `dag_params()` for run-time overrides to apply.
    """

    def __init__(self, group_id: str, config: JobConfiguration, **options: Any) -> None:
        super().__init__(group_id=group_id)
        with self:
            add_job_tasks(config, **options)


def dag_id_for(path: str | os.PathLike[str]) -> str:
    return "jobforge_" + re.sub(r"[^A-Za-z0-9_]", "_", Path(path).stem)


def load_dags(
    path_or_glob: str | os.PathLike[str],
    namespace: MutableMapping[str, Any],
    **options: Any,
) -> dict[str, DAG]:
    """One DAG per config file matching `path_or_glob`, put in `namespace` (a DAG file's
    globals()). A broken config becomes a failing placeholder DAG of its own name — its
    error in the DAG's description, docs and only task — and never hides the others."""
    pattern = str(path_or_glob)
    paths = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    dags = {}
    for path in paths:
        dag_id = dag_id_for(path)
        try:
            dag = build_dag(load_config(path), dag_id, file=path, **options)
        except JobForgeError as exc:
            log.error("jobforge config %s: %s", path, exc.one_line())
            dag = _broken_dag(dag_id, path, exc.one_line())
        dags[dag_id] = namespace[dag_id] = dag
    return dags


def _broken_dag(dag_id: str, path: str, error: str) -> DAG:
    from airflow_jobforge.operators.config_error import ConfigErrorOperator

    first_line = error.splitlines()[0]
    with DAG(
        dag_id,
        schedule=None,
        catchup=False,
        tags=["jobforge", "config-error"],
        description=f"BROKEN CONFIG {path}: {first_line}"[:1000],
        doc_md=f"### Broken jobforge config `{path}`\n\n```\n{error}\n```",
    ) as dag:
        ConfigErrorOperator(task_id="config_error", error=error)
    return dag
