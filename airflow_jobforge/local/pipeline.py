"""Run a pipeline on this machine without Airflow (`jobforge run PIPELINE --no-airflow`).

Stage by stage, each through `run_locally` into `<pipeline run dir>/<stage>/`, leaving what
the pipeline DAG leaves: `pipeline.json` first, `stage.json` as each stage ends, the
`output-stage<N>` links a generator sees. So `jobforge results show` reads either run the
same way. A generated stage's command runs exactly as the DAG's plan task runs it
(`StageRun.generator_argv`: an argv, no shell of ours) and fails with the same message.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from airflow_jobforge.config.models import JobConfiguration
from airflow_jobforge.config.pipeline import (
    Pipeline,
    PipelineStage,
    apply_stage_overrides,
    load_stage_config,
    resolve_config_file,
)
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.local.direct import run_locally
from airflow_jobforge.planning.stages import (
    StageRun,
    generated_config,
    merged_output,
    stage_entries,
)
from airflow_jobforge.rundir.manifest import safe_run_id
from airflow_jobforge.rundir.pipeline import (
    FAILED,
    SKIPPED,
    SUCCESS,
    PipelineRunManifest,
    StageStatus,
    stage_dir,
    write_pipeline_manifest,
    write_stage_status,
)
from airflow_jobforge.rundir.records import Summary

RUN_ID_PREFIX = "nodag"
# Lines of a successful generator's output shown as progress: enough for "wrote 3 jobs".
GENERATOR_OUTPUT_LINES = 20


@dataclass(frozen=True)
class StageOutcome:
    """How one stage of a local pipeline run ended; `summary` is None when no job ran."""

    name: str
    state: str
    reason: str | None = None
    summary: Summary | None = None


@dataclass(frozen=True)
class LocalPipelineRun:
    run_dir: Path
    run_id: str
    stages: list[StageOutcome]

    @property
    def succeeded(self) -> bool:
        return all(stage.state == SUCCESS for stage in self.stages)


def local_run_id(when: datetime | None = None) -> str:
    """`nodag__<UTC time>`: an Airflow-like run id (as `manual__...`) that says no DAG ran."""
    return f"{RUN_ID_PREFIX}__{(when or datetime.now(timezone.utc)).isoformat()}"


def run_pipeline_locally(
    pipeline: Pipeline,
    pipeline_file: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    progress: Callable[[str], None] = print,
    run_id: str | None = None,
) -> LocalPipelineRun:
    """Every stage in order in `<output_dir>/<run id>/<stage>/`. A stage that failed (a job
    did not succeed, or its generator failed) skips the later stages unless its
    `on_failure` is `continue`."""
    pipeline_file = os.path.abspath(pipeline_file)
    run_id = run_id or local_run_id()
    run_dir = Path(output_dir).resolve() / safe_run_id(run_id)
    manifest = PipelineRunManifest(
        stages=stage_entries(pipeline, pipeline_file), pipeline_file=pipeline_file, run_id=run_id
    )
    write_pipeline_manifest(run_dir, manifest)
    outcomes: list[StageOutcome] = []
    stopped_by: str | None = None
    count = len(pipeline.stages)
    for number, stage in enumerate(pipeline.stages, 1):
        directory = stage_dir(run_dir, stage.name)
        if stopped_by is not None:
            outcome = StageOutcome(stage.name, SKIPPED, f"stage {stopped_by} failed")
            write_stage_status(directory, StageStatus.ended_now(SKIPPED, outcome.reason))
        else:
            progress(f"stage {number}/{count} {stage.name} starts")
            earlier = tuple(s.name for s in pipeline.stages[: number - 1])
            outcome = _run_stage(stage, number, earlier, pipeline_file, run_dir, progress)
            if outcome.state == FAILED and stage.on_failure == "stop":
                stopped_by = stage.name
        progress(
            f"stage {number}/{count} {stage.name}: {outcome.state}"
            + (f" ({outcome.summary})" if outcome.summary else "")
        )
        outcomes.append(outcome)
    return LocalPipelineRun(run_dir, run_id, outcomes)


def _run_stage(
    stage: PipelineStage,
    number: int,
    earlier: tuple[str, ...],
    pipeline_file: str,
    run_dir: Path,
    progress: Callable[[str], None],
) -> StageOutcome:
    directory = stage_dir(run_dir, stage.name)
    try:
        if stage.command is not None:
            run = StageRun(
                str(run_dir),
                stage.name,
                number,
                earlier,
                stage.config_output,
                os.path.dirname(os.path.abspath(pipeline_file))
                if stage.command_dir == "pipeline"
                else None,
                os.path.abspath(pipeline_file),
            )
            config, config_file = _generate(stage, stage.command, run, progress), run.config_path
        else:
            config_file = resolve_config_file(pipeline_file, stage)
            config = load_stage_config(config_file, stage=stage.name)[0]
            config = apply_stage_overrides(
                config, stage.overrides, stage=stage.name, file=pipeline_file
            )
    except JobForgeError as exc:
        outcome = StageOutcome(stage.name, FAILED, str(exc))
        write_stage_status(directory, StageStatus.ended_now(FAILED, outcome.reason))
        return outcome
    summary = run_locally(config, directory, progress, config_file=config_file)
    state = SUCCESS if summary.total and summary.successful == summary.total else FAILED
    write_stage_status(directory, StageStatus.ended_now(state, jobs=len(config.jobs)))
    return StageOutcome(stage.name, state, None, summary)


def _generate(
    stage: PipelineStage, command: str, run: StageRun, progress: Callable[[str], None]
) -> JobConfiguration:
    """Run the generator and load what it wrote (`generated_config` says what can fail)."""

    result = subprocess.run(run.generator_argv(command), capture_output=True, check=False)
    output = merged_output(
        result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")
    )

    for line in output.splitlines()[-GENERATOR_OUTPUT_LINES:]:
        progress(f"  {stage.name} generator: {line}")
    written = run.config_path if os.path.isfile(run.config_path) else None
    return generated_config(
        run, command, stage.overrides, result.returncode, output, written
    ).config
