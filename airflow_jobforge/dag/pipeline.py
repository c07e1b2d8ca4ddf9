"""Pipeline -> Airflow DAG: a TaskGroup per stage, stage N+1 after stage N succeeded.

Per stage: `<stage>.start` (the gate), the stage's tasks, `<stage>.done` (emits the stage's
Asset). A stage with a config file is rendered at parse time, exactly as `build_dag` renders
a config (its tasks just write under `<run dir>/<stage>/`). A generated stage is known only at
run time: `<stage>.plan` runs the generator and plans the config it wrote, and the batches
run as one mapped task group `<stage>.batches` (`submit >> wait >> results`, a map index per
batch): the batch tasks of a static stage, told their batch at run time (`operators.planned`).
Mapping per batch, not per job, keeps a 10,000-job stage far below Airflow's
`max_map_length`. The run's last task, `pipeline_summary`, says what each stage did.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

from airflow.sdk import DAG, TaskGroup, task_group

from airflow_jobforge.config.pipeline import (
    Pipeline,
    PipelineStage,
    apply_stage_overrides,
    is_jade_config_file,
    load_stage_config,
    resolve_config_file,
)
from airflow_jobforge.dag.factory import ALL_DONE, Wiring, add_render_tasks, dag_params
from airflow_jobforge.dag.options import DagOptions
from airflow_jobforge.dag.render import Render, render_config
from airflow_jobforge.dag.render_cache import render_file
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.operators.planned import (
    PlannedBatchResultOperator,
    PlannedSubmitOperator,
)
from airflow_jobforge.operators.stage import (
    PipelineSummaryOperator,
    PlannedRunSummaryOperator,
    StageDoneOperator,
    StagePlanOperator,
    StageStartOperator,
    stage_asset,
)
from airflow_jobforge.planning.stages import stage_entries
from airflow_jobforge.rundir.pipeline import PipelineRunManifest
from airflow_jobforge.sensors.planned import PlannedJobSensor


def stage_options(options: DagOptions, stage: PipelineStage) -> DagOptions:
    """The pipeline's options with the stage's own (`options` of the stage) where set."""
    own = {k: v for k, v in stage.options.model_dump().items() if v is not None}
    return replace(options, **own)


def render_stage(stage: PipelineStage, pipeline_file: str | None, job_tasks: bool | None) -> Render:
    """A static stage's render: from the render cache when the stage overrides nothing and
    its config is ours (the dag-processor re-parses the DAG file often), else loaded (a
    JADE config imported) and rendered with the stage's overrides."""
    path = config_path(pipeline_file, stage)
    if stage.overrides.is_empty() and not is_jade_config_file(path):
        rendered = render_file(path, job_tasks=job_tasks)
        if rendered.render is None:
            raise JobForgeError(f"stage {stage.name!r}: {rendered.error}", file=pipeline_file)
        return rendered.render
    config, _ = load_stage_config(path, stage=stage.name)
    config = apply_stage_overrides(config, stage.overrides, stage=stage.name, file=pipeline_file)
    return render_config(config, job_tasks=job_tasks, file=path, validated=True)


def _anchor(pipeline_file: str | None) -> str:
    """What a stage's relative paths are relative to: the pipeline file's directory, or the
    working directory for a pipeline built in code (no file)."""
    return pipeline_file or os.path.join(os.getcwd(), "-")


def config_path(pipeline_file: str | None, stage: PipelineStage) -> str:
    """A static stage's config file."""
    return resolve_config_file(_anchor(pipeline_file), stage)


def pipeline_manifest(pipeline: Pipeline, pipeline_file: str | None) -> dict[str, Any]:
    """What every run's `pipeline.json` says of the stages (the run's ids are added then)."""
    manifest = PipelineRunManifest(
        stages=stage_entries(pipeline, _anchor(pipeline_file)), pipeline_file=pipeline_file
    )
    return json.loads(manifest.to_json())


def add_pipeline_tasks(
    pipeline: Pipeline, options: DagOptions, *, dag_id: str, file: str | None = None
) -> tuple[list[Any], list[Any]]:
    """Every stage's TaskGroup, chained, and the pipeline's summary. Returns (first, last)."""
    options.check(file)
    manifest = pipeline_manifest(pipeline, file)
    previous: PipelineStage | None = None
    previous_done: Any = None
    first: list[Any] = []
    dones = []
    for number, stage in enumerate(pipeline.stages, 1):
        own = stage_options(options, stage)
        wiring = Wiring.of(own, stage.name)
        after_continue = previous is not None and previous.on_failure == "continue"
        with TaskGroup(group_id=stage.name, tooltip=_tooltip(number, stage)) as group:
            start = StageStartOperator(
                task_id="start",
                manifest=manifest,
                previous=previous.name if after_continue else None,
                trigger_rule=ALL_DONE if after_continue else "all_success",
                doc_md=f"Stage {number} `{stage.name}` starts",
                **wiring.common,
            )
            if stage.command:
                summary = _generated_stage(stage, number, pipeline, wiring, start, file)
            else:
                render = render_stage(stage, file, own.job_tasks)
                heads, tails = add_render_tasks(
                    render, own, file=config_path(file, stage), stage=stage.name
                )
                start >> heads
                # The summary fails when a job did: `done` must follow it, not only the
                # teardown (which runs whatever happened). A worker that runs one batch's
                # task builds only that batch (`factory._worker_batch`): no summary then.
                summary = [group.children.get(f"{stage.name}.summary"), *tails]
                summary = [task for task in summary if task is not None]
            done = StageDoneOperator(
                task_id="done",
                asset=stage_asset(dag_id, stage.name),
                doc_md=f"Stage `{stage.name}` succeeded: emits its Asset",
                **wiring.common,
            )
            summary >> done
        if previous_done is not None:
            previous_done >> start
        else:
            first = [start]
        previous, previous_done = stage, done
        dones.append(done)
    wiring = Wiring.of(options)
    end = PipelineSummaryOperator(
        task_id="pipeline_summary",
        stages=[stage.name for stage in pipeline.stages],
        on_failure={stage.name: stage.on_failure for stage in pipeline.stages},
        doc_md="What each stage did: succeeded, failed or skipped (and why).",
        **wiring.common,
    )
    dones >> end
    return first, [end]


def _tooltip(number: int, stage: PipelineStage) -> str:
    source = f"generated by `{stage.command}`" if stage.command else f"config {stage.config_file}"
    return f"stage {number}: {source}"


def _generated_stage(
    stage: PipelineStage,
    number: int,
    pipeline: Pipeline,
    wiring: Wiring,
    start: Any,
    file: str | None,
) -> Any:
    """plan >> batches (mapped: submit >> wait >> results) >> summary."""
    options = wiring.options
    earlier = [s.name for s in pipeline.stages[: number - 1]]
    plan = StagePlanOperator(
        task_id="plan",
        number=number,
        earlier=earlier,
        command=stage.command,
        config_output=stage.config_output,
        command_dir=os.path.dirname(os.path.abspath(file))
        if file and stage.command_dir == "pipeline"
        else None,
        pipeline_file=os.path.abspath(file) if file else None,
        overrides=stage.overrides.model_dump(mode="json", exclude_none=True),
        doc_md=f"Runs `{stage.command}` and plans the config it writes",
        **wiring.common,
    )
    start >> plan
    common = wiring.common

    @task_group(group_id="batches")
    def batches(name: str) -> None:
        """One instance per planned batch (`name` is the batch's; the tasks read the rest)."""
        submit = PlannedSubmitOperator(
            task_id="submit",
            plan_task_id=plan.task_id,
            wait_task_id="",
            workdir=options.workdir,
            queue_poll_interval=max(options.poll_interval, 2.0),
            **common,
        )
        wait = PlannedJobSensor(
            task_id="wait",
            plan_task_id=plan.task_id,
            submit_task_id=submit.task_id,
            cluster=common["cluster"],
            stage=common["stage"],
            deferrable=options.deferrable,
            poll_interval=options.poll_interval,
            max_resubmits=options.node_failure_retries,
        )
        submit.wait_task_id = wait.task_id
        results = PlannedBatchResultOperator(
            task_id="results",
            plan_task_id=plan.task_id,
            submit_task_id=submit.task_id,
            wait_task_id=wait.task_id,
            poll_interval=options.poll_interval,
            trigger_rule=ALL_DONE,
            **common,
        )
        submit >> wait >> results

    mapped = batches.expand(name=plan.output)
    summary = PlannedRunSummaryOperator(
        task_id="summary",
        plan_task_id=plan.task_id,
        batch="all",
        submit_task_id="",
        trigger_rule=ALL_DONE,
        doc_md=f"Summary of stage `{stage.name}`",
        **common,
    )
    mapped >> summary
    plan >> summary
    return summary


def build_pipeline_dag(
    pipeline: Pipeline,
    dag_id: str,
    options: DagOptions | None = None,
    *,
    file: str | None = None,
    schedule: Any = None,
    **kwargs: Any,
) -> DAG:
    """The pipeline's DAG.

    :param pipeline: the pipeline (`load_pipeline`): stages, validated
    :param dag_id: the DAG's id
    :param options: how the tasks run (`DagOptions`); its fields may also be given as
        keyword arguments, which win. A stage's `options` override them for that stage
    :param file: the pipeline file: relative config paths are relative to its directory
    :param schedule: Airflow schedule; None: triggered runs only
    :param kwargs: `DagOptions` fields, then any `DAG(...)` argument
    """
    options = DagOptions.take(options, kwargs).for_dag(dag_id, file)
    kwargs.setdefault("catchup", False)
    kwargs.setdefault("tags", ["jobforge", "pipeline"])
    kwargs.setdefault("max_active_runs", 1)
    names = ", ".join(f"`{s.name}`" for s in pipeline.stages)
    kwargs.setdefault(
        "doc_md",
        f"jobforge pipeline: {len(pipeline.stages)} stages ({names}), backend "
        f"`{options.backend}`" + (f", from `{file}`" if file else ""),
    )
    params = {**dag_params(), **(kwargs.pop("params", None) or {})}
    dag = DAG(dag_id, schedule=schedule, **kwargs)
    with dag:
        add_pipeline_tasks(pipeline, options, dag_id=dag_id, file=file)
    dag.params = params
    return dag
