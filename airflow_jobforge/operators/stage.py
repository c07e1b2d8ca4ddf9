"""The tasks a pipeline adds around its stages' batch tasks.

- `StageStartOperator` (`<stage>.start`): the stage's gate. It runs after the previous
  stage succeeded (or ended, where that stage says `on_failure: continue`) and leaves the
  pipeline's manifest in the pipeline run dir.
- `StagePlanOperator` (`<stage>.plan`, generated stages only): runs the generator command,
  validates and plans what it wrote, and hands each batch to the stage's mapped batch tasks.
- `StageDoneOperator` (`<stage>.done`): after the stage's summary succeeded; records the
  stage's success and emits the stage's Asset, its run dir in the event's extra.
- `PipelineSummaryOperator` (`pipeline_summary`): the run's last task: each stage's state,
  with the reason for a failed or skipped one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import PurePosixPath
from typing import Any

from airflow.sdk import Asset, BaseOperator

from airflow_jobforge.airflow_compat import AirflowFailException, AirflowSkipException
from airflow_jobforge.config.pipeline import StageOverrides
from airflow_jobforge.operators.base import (
    ClusterMixin,
    context_run_key,
    run_dir_of,
    run_output_dir,
    with_infra_retries,
)
from airflow_jobforge.operators.planned import BATCH_KEY
from airflow_jobforge.operators.results import RunSummaryOperator
from airflow_jobforge.planning.stages import (
    GeneratorFailed,
    StageRun,
    generated_config,
    generator_failure,
    merged_output,
    planned_batches,
)
from airflow_jobforge.results.report import write_pipeline_report
from airflow_jobforge.rundir.manifest import RunManifest, manifest_path
from airflow_jobforge.rundir.pipeline import (
    PipelineRunManifest,
    StageStatus,
    pipeline_manifest_path,
    stage_status_path,
)

PLAN_KEY = "plan"
ASSET_SCHEME = "x-jobforge"
DEFAULT_MAX_MAP_LENGTH = 1024


def stage_asset(dag_id: str, stage: str) -> Asset:
    """The Asset a pipeline's stage updates when it succeeds: schedule a DAG on it with
    `schedule=[stage_asset("jobforge_mypipeline", "simulate")]`."""
    return Asset(
        name=f"{dag_id}.{stage}", uri=f"{ASSET_SCHEME}://{dag_id}/{stage}", group="jobforge"
    )


class _PipelineTask(ClusterMixin, BaseOperator):
    """Writes into the pipeline's run dir where batches are submitted. An outage there (SSH,
    the file system) takes jobforge's infrastructure retries; what a retry would not change
    (a generator's failure, a failed stage) fails for good."""

    ui_color = "#e6e0f0"

    def __init__(self, *, output_dir: str, cluster: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**with_infra_retries(kwargs))
        self.output_dir = output_dir
        self.cluster = cluster

    def pipeline_dir(self, context: Any) -> str:
        return run_dir_of(self.output_dir, context["run_id"])

    def write(self, path: str, text: str) -> None:
        client = self.hook.get_client()
        try:
            client.write_text(path, text)
        finally:
            client.close()


class StageStartOperator(_PipelineTask):
    """The gate of a stage; leaves the pipeline's manifest (`pipeline.json`), which results
    and the UI read to show a pipeline run stage by stage.

    :param manifest: the pipeline's stages (`PipelineRunManifest` as a dict, without run)
    :param previous: the stage before, when its failure does not stop this one (`continue`)
    :param output_dir: the pipeline's base output directory
    :param cluster: `ClusterSettings` as a dict (where the run dir is written)
    """

    def __init__(
        self, *, manifest: dict[str, Any], previous: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.manifest = manifest
        self.previous = previous

    def execute(self, context: Any) -> None:
        if self.previous is not None:
            self._skip_if_previous_skipped(context)
        manifest = PipelineRunManifest.from_dict(
            {**self.manifest, "dag_id": context["dag"].dag_id, "run_id": context["run_id"]}
        )
        path = pipeline_manifest_path(self.pipeline_dir(context))
        self.write(str(path), manifest.to_json())
        # Where the UI's results tab finds the run before any summary ran.
        context["ti"].xcom_push(key="pipeline_run_dir", value=str(path.parent))
        self.log.info("stage %s starts; pipeline run dir %s", self.stage, path.parent)

    def _skip_if_previous_skipped(self, context: Any) -> None:
        """After a stage whose failure does not stop the pipeline (`on_failure: continue`)
        this gate runs whatever that stage did (ALL_DONE): but when that stage never
        started, an earlier stage stopped the pipeline, and this one must not run either."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        run_id = context["run_id"]
        gate = f"{self.previous}.start"
        states = RuntimeTaskInstance.get_task_states(
            dag_id=context["dag"].dag_id, task_ids=[gate], run_ids=[run_id]
        ).get(run_id, {})
        if str(states.get(gate)) != "success":
            raise AirflowSkipException(
                f"stage {self.previous} did not run: an earlier stage failed"
            )


class StagePlanOperator(_PipelineTask):
    """Runs a generated stage's command, validates and plans the config it wrote, and hands
    every batch to the stage's batch tasks (XCom `batch_<i>`; the return value maps them).

    A generator that fails, writes nothing, writes an invalid config or one without jobs
    fails this task for good with the stage, the command, its exit code and output tail: a
    retry would do the same. The stage's run manifest is written here, so `results show`
    counts the stage's jobs while they run.

    :param number: the stage's number in the pipeline (1-based)
    :param earlier: the names of the stages before it
    :param command: the generator, run by bash in the pipeline run dir (or `command_dir`)
    :param config_output: where it writes the config, relative to where it runs
    :param command_dir: where it runs, if not in the pipeline run dir (JADE's commands run
        in the pipeline file's directory)
    :param pipeline_file: the pipeline file (`JOBFORGE_PIPELINE_FILE` in its environment)
    :param overrides: the stage's overrides (`StageOverrides` as a dict)
    :param output_dir: the pipeline's base output directory
    :param cluster: `ClusterSettings` as a dict (where the command runs)
    """

    def __init__(
        self,
        *,
        number: int,
        earlier: list[str],
        command: str,
        config_output: str | None = None,
        command_dir: str | None = None,
        pipeline_file: str | None = None,
        overrides: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.command_dir = command_dir
        self.pipeline_file = pipeline_file
        self.number = number
        self.earlier = earlier
        self.command = command
        self.config_output = config_output
        self.overrides = overrides or {}

    def execute(self, context: Any) -> list[str]:
        assert self.stage is not None
        run = StageRun(
            self.pipeline_dir(context),
            self.stage,
            self.number,
            tuple(self.earlier),
            self.config_output,
            self.command_dir,
            self.pipeline_file,
        )
        result = self.hook.run_argv(run.generator_argv(self.command))
        output = merged_output(result.stdout, result.stderr)
        if output:
            self.log.info("generator output:\n%s", output[-10000:])
        text = self._read_config(run.config_path) if result.returncode == 0 else None
        with tempfile.TemporaryDirectory() as tmp:
            # A local copy: over SSH the config is on the cluster.
            local = os.path.join(tmp, f"config{PurePosixPath(run.config_path).suffix or '.json'}")
            if text is not None:
                with open(local, "w", encoding="utf-8") as out:
                    out.write(text)
            overrides = StageOverrides.model_validate(self.overrides)
            try:
                generated = generated_config(
                    run,
                    self.command,
                    overrides,
                    result.returncode,
                    output,
                    local if text is not None else None,
                )
            except GeneratorFailed as exc:  # a retry would do the same
                raise AirflowFailException(str(exc)) from None
        for note in generated.notes:
            self.log.info("%s: not carried over: %s", run.config_path, note)
        config = generated.config
        ignored = [
            field
            for field in ("setup_command", "teardown_command", "job_post_process_config")
            if getattr(config, field)
        ]
        if ignored:  # their tasks would have to exist when the DAG is parsed
            self.log.warning(
                "a generated stage runs no %s: give them to a stage with a config file",
                ", ".join(ignored),
            )
        batches = planned_batches(config)
        limit = _max_map_length()
        if len(batches) > limit:
            self._fail(
                f"{len(batches)} batches exceed Airflow's [core] max_map_length "
                f"({limit}): raise it, or the groups' per_node_batch_size"
            )
        return self._hand_out(context, batches, run)

    def _fail(self, problem: str) -> None:
        assert self.stage is not None
        raise AirflowFailException(generator_failure(self.stage, self.command, problem, None, ""))

    def _read_config(self, path: str) -> str | None:
        if os.path.isfile(path):
            return open(path, encoding="utf-8", errors="replace").read()
        if not self.cluster.get("ssh_conn_id"):
            return None
        result = self.hook.run_argv(["cat", "--", path], timeout=300)
        return result.stdout if result.returncode == 0 else None

    def _hand_out(self, context: Any, batches: list[dict[str, Any]], run: StageRun) -> list[str]:
        ti = context["ti"]
        for i, batch in enumerate(batches):
            ti.xcom_push(key=BATCH_KEY.format(index=i), value=batch)
        jobs_of = {batch["name"]: batch["jobs"] for batch in batches}
        ti.xcom_push(key=PLAN_KEY, value={"batches": jobs_of, "config_file": run.config_path})
        manifest = RunManifest(
            jobs={name: batch for batch, names in jobs_of.items() for name in names},
            config_file=run.config_path,
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            run_key=context_run_key(context),
        )
        try:
            self.write(str(manifest_path(run.stage_dir)), manifest.to_json())
        except Exception as exc:  # the stage's summary writes it again
            self.log.warning("stage manifest not written: %s", exc)
        self.log.info(
            "stage %s: %d jobs in %d batches from %s",
            self.stage,
            len(manifest.jobs),
            len(batches),
            run.config_path,
        )
        return list(jobs_of)


def _max_map_length() -> int:
    from airflow_jobforge.airflow_compat import sdk_conf

    try:
        return sdk_conf().getint("core", "max_map_length", fallback=DEFAULT_MAX_MAP_LENGTH)
    except (ValueError, TypeError):
        return DEFAULT_MAX_MAP_LENGTH


class PlannedRunSummaryOperator(RunSummaryOperator):
    """The summary of a generated stage: its batches come from the plan task.

    :param plan_task_id: the stage's plan task
    """

    def __init__(self, *, plan_task_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("batches", {})
        super().__init__(**kwargs)
        self.plan_task_id = plan_task_id

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        plan = context["ti"].xcom_pull(task_ids=self.plan_task_id, key=PLAN_KEY, map_indexes=-1)
        self.batches = dict((plan or {}).get("batches") or {})
        self.jobs = [name for names in self.batches.values() for name in names]
        self.config_file = (plan or {}).get("config_file")


class StageDoneOperator(_PipelineTask):
    """Runs when the stage's summary succeeded: records the stage's success (`stage.json`)
    and emits its Asset (`stage_asset`), the stage's run dir in the event's extra.

    :param asset: the stage's Asset (also its only outlet)
    """

    def __init__(self, *, asset: Asset, **kwargs: Any) -> None:
        super().__init__(outlets=[asset], **kwargs)
        self.asset = asset

    def execute(self, context: Any) -> dict[str, Any]:
        stage_dir = run_output_dir(self.output_dir, context)
        status = StageStatus.ended_now("success")
        self.write(str(stage_status_path(stage_dir)), status.to_json())
        extra = {
            "run_dir": stage_dir,
            "pipeline_run_dir": self.pipeline_dir(context),
            "stage": self.stage,
            "dag_id": context["dag"].dag_id,
            "run_id": context["run_id"],
        }
        context["outlet_events"][self.asset].extra = extra
        self.log.info("stage %s succeeded: %s", self.stage, stage_dir)
        return extra


class PipelineSummaryOperator(_PipelineTask):
    """The pipeline run's last task: each stage succeeded, failed or was skipped (and why).
    Fails unless every stage succeeded. Records the state of each stage that did not
    succeed (`stage.json`), pushes the run dir (`run_dir`) for the UI's results page.

    :param stages: the stages' names, in order
    :param on_failure: stage name -> `stop` or `continue`
    """

    def __init__(self, *, stages: list[str], on_failure: dict[str, str], **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.stages = stages
        self.on_failure = on_failure

    def execute(self, context: Any) -> dict[str, str]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        run_id = context["run_id"]
        pipeline_dir = self.pipeline_dir(context)
        context["ti"].xcom_push(key="run_dir", value=pipeline_dir)
        states = RuntimeTaskInstance.get_task_states(
            dag_id=context["dag"].dag_id, run_ids=[run_id]
        ).get(run_id, {})
        outcome: dict[str, str] = {}
        failed_before: str | None = None
        lines = []
        for number, stage in enumerate(self.stages, 1):
            state, reason = _stage_state(stage, states, failed_before)
            outcome[stage] = state
            if state == "failed" and self.on_failure.get(stage, "stop") == "stop":
                failed_before = failed_before or stage
            if state != "success":
                status = StageStatus.ended_now(state, reason)
                try:
                    self.write(str(stage_status_path(f"{pipeline_dir}/{stage}")), status.to_json())
                except Exception as exc:
                    self.log.warning("state of stage %s not written: %s", stage, exc)
            lines.append(
                f"stage {number}/{len(self.stages)} {stage}: {state}"
                + (f" ({reason})" if reason else "")
            )
        self.log.info("pipeline run %s:\n%s", pipeline_dir, "\n".join(lines))
        if os.path.isdir(pipeline_dir):  # else on the cluster only: `jobforge stats` there
            try:
                self.log.info("report: %s", write_pipeline_report(pipeline_dir))
            except Exception as exc:
                self.log.warning("pipeline report not written: %s", exc)
        bad = [stage for stage, state in outcome.items() if state != "success"]
        if bad:
            raise AirflowFailException(
                "; ".join(line for line in lines if not line.endswith(": success"))
            )
        return outcome


def _stage_state(
    stage: str, states: dict[str, Any], failed_before: str | None
) -> tuple[str, str | None]:
    """success / failed / skipped from the states of the stage's tasks."""
    mine = {task: str(state) for task, state in states.items() if task.startswith(f"{stage}.")}
    if mine.get(f"{stage}.done") == "success":
        return "success", None
    start = mine.get(f"{stage}.start")
    if start in ("upstream_failed", "skipped", "None", None):
        reason = f"stage {failed_before} failed" if failed_before else "not started"
        return "skipped", reason
    red = sorted(task for task, state in mine.items() if state in ("failed", "upstream_failed"))
    if f"{stage}.plan" in red:
        return "failed", "its plan task failed: the generator or its config (see its log)"
    return "failed", f"failed tasks: {', '.join(red[:10])}" if red else "did not succeed"
