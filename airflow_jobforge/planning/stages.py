"""A pipeline stage at run time: where it writes, and how its generator command runs.

A pipeline run dir holds one run dir per stage (`<pipeline run dir>/<stage name>/`). A
generated stage's command runs where batches are submitted (the Airflow worker, or the login
node over SSH), in the pipeline run dir, with the environment below; it writes the stage's
config, which is then validated and planned like any other. JADE's variable names are set
too, and `output-stage<N>` links name the earlier stages' dirs as JADE lays them out, so a
JADE auto-config script runs unchanged.

Pure: the argv built here goes through a transport (a list, never a shell string); the user's
command is the only text a shell interprets, as a job's command is.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Any

from airflow_jobforge.config.models import JobConfiguration
from airflow_jobforge.config.pipeline import (
    Pipeline,
    StageOverrides,
    apply_stage_overrides,
    load_stage_config,
    resolve_config_file,
)
from airflow_jobforge.errors import ConfigError, JobForgeError
from airflow_jobforge.planning.planner import batch_spec, merge_arrays, plan_batches
from airflow_jobforge.rundir.pipeline import CONFIG, GENERATED, StageEntry

ENV_OUTPUT_DIR = "JOBFORGE_PIPELINE_OUTPUT_DIR"
ENV_STAGE_NUM = "JOBFORGE_STAGE_NUM"
ENV_STAGE_NAME = "JOBFORGE_STAGE_NAME"
ENV_STAGE_DIR = "JOBFORGE_STAGE_DIR"
ENV_STAGE_CONFIG = "JOBFORGE_STAGE_CONFIG"
ENV_PREVIOUS_DIR = "JOBFORGE_PREVIOUS_STAGE_DIR"
ENV_PIPELINE_FILE = "JOBFORGE_PIPELINE_FILE"
JADE_OUTPUT_DIR = "JADE_PIPELINE_OUTPUT_DIR"
JADE_STAGE_ID = "JADE_PIPELINE_STAGE_ID"
JADE_STATUS_FILE = "JADE_PIPELINE_STATUS_FILE"
STATUS_FILE = "pipeline.json"
DEFAULT_CONFIG_NAME = "config.json"
OUTPUT_TAIL_CHARS = 4000
LAST_LINES_CHARS = 300

# Runs as `bash -c WRAPPER jobforge-stage RUN_DIR STAGE_DIR CONFIG COMMAND CWD [TARGET LINK]...`:
# every value is a positional argument, never spliced into the script.
_WRAPPER = r"""set -e
run_dir=$1 stage_dir=$2 config=$3 command=$4 cwd=$5
shift 5
mkdir -p -- "$stage_dir" "$(dirname -- "$config")"
cd -- "$run_dir"
while [ $# -ge 2 ]; do ln -sfn -- "$1" "$2"; shift 2; done
rm -f -- "$config"
cd -- "$cwd"
set +e
bash -c "$command"
"""


def jade_link(number: int) -> str:
    """JADE's name for stage `number`'s output dir: its auto-config scripts build it."""
    return f"output-stage{number}"


@dataclass(frozen=True)
class StageRun:
    """One stage of one pipeline run, as its generator and tasks see it."""

    pipeline_dir: str
    name: str
    number: int
    earlier: tuple[str, ...] = ()
    """The names of the stages before this one, in order."""
    config_output: str | None = None
    """Where the generator writes, relative to `cwd`; None: `<name>/config.json` in the
    pipeline dir."""
    cwd: str | None = None
    """Where the generator runs; None: the pipeline dir. JADE's auto-config commands run
    where `jade pipeline submit` was started: the pipeline file's directory here."""
    pipeline_file: str | None = None

    @property
    def stage_dir(self) -> str:
        return posixpath.join(self.pipeline_dir, self.name)

    @property
    def workdir(self) -> str:
        return self.cwd or self.pipeline_dir

    @property
    def config_path(self) -> str:
        if self.config_output is None:
            return posixpath.join(self.stage_dir, DEFAULT_CONFIG_NAME)
        return posixpath.normpath(posixpath.join(self.workdir, self.config_output))

    @property
    def previous_dir(self) -> str:
        return posixpath.join(self.pipeline_dir, self.earlier[-1]) if self.earlier else ""

    def environment(self) -> dict[str, str]:
        return {
            ENV_OUTPUT_DIR: self.pipeline_dir,
            ENV_STAGE_NUM: str(self.number),
            ENV_STAGE_NAME: self.name,
            ENV_STAGE_DIR: self.stage_dir,
            ENV_STAGE_CONFIG: self.config_path,
            ENV_PREVIOUS_DIR: self.previous_dir,
            ENV_PIPELINE_FILE: self.pipeline_file or "",
            JADE_OUTPUT_DIR: self.pipeline_dir,
            JADE_STAGE_ID: str(self.number),
            JADE_STATUS_FILE: posixpath.join(self.pipeline_dir, STATUS_FILE),
        }

    def links(self) -> list[tuple[str, str]]:
        """(target, link) pairs: `output-stage<N>` -> the stage's dir, this one's included."""
        names = (*self.earlier, self.name)
        return [(name, jade_link(n)) for n, name in enumerate(names, 1)]

    def generator_argv(self, command: str) -> list[str]:
        """`env K=V... bash -c WRAPPER ...`: make the dirs and links, remove a stale config,
        then run `command` by bash in `workdir`."""
        env = [f"{key}={value}" for key, value in self.environment().items()]
        pairs = [item for pair in self.links() for item in pair]
        return [
            "env",
            *env,
            "bash",
            "-c",
            _WRAPPER,
            "jobforge-stage",
            self.pipeline_dir,
            self.stage_dir,
            self.config_path,
            command,
            self.workdir,
            *pairs,
        ]


def generator_failure(
    stage: str, command: str, problem: str, returncode: int | None, output: str
) -> str:
    """The one message a failed generation gives: stage, command, exit code, output tail.
    Its first line says it all (a one-line view shows only that one); the longer tail of
    the output follows."""
    code = f" (exit code {returncode})" if returncode is not None else ""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    last = " / ".join(lines[-3:])[-LAST_LINES_CHARS:]
    text = f"stage {stage!r}: {problem}{code}; command: {command}"
    text += f"; output: {last}" if last else "; no output"
    if len(lines) > 3:
        text += "\noutput (last lines):\n" + "\n".join(lines)[-OUTPUT_TAIL_CHARS:]
    return text


class GeneratorFailed(JobForgeError):
    """A generated stage's config could not be made: its message is `generator_failure`'s."""


@dataclass(frozen=True)
class Generated:
    config: JobConfiguration
    notes: list[str]


def generated_config(
    run: StageRun,
    command: str,
    overrides: StageOverrides,
    returncode: int,
    output: str,
    local_copy: str | None,
) -> Generated:
    """What a generator left, checked: the command succeeded, wrote a config (`local_copy`:
    where it can be read here, None when it wrote none), a valid one (JADE's format imported
    on the fly), with jobs. Each failure is a `GeneratorFailed` naming the stage, the
    command, the exit code (of a failed command) and the output's tail."""

    def failure(problem: str, code: int | None = None) -> GeneratorFailed:
        return GeneratorFailed(generator_failure(run.name, command, problem, code, output))

    if returncode != 0:
        raise failure("the generator command failed", returncode)
    if local_copy is None:
        raise failure(f"the generator wrote no config at {run.config_path}")
    try:
        config, notes = load_stage_config(local_copy, stage=run.name)
        config = apply_stage_overrides(config, overrides, stage=run.name)
    except JobForgeError as exc:
        reason = (
            "; ".join(str(p) for p in exc.problems) if isinstance(exc, ConfigError) else exc.reason
        )
        raise failure(
            f"the generated config is invalid: {reason.replace(local_copy, run.config_path)}"
        ) from None
    if not config.jobs:
        raise failure(f"the generated config {run.config_path} has no jobs")
    return Generated(config, notes)


def merged_output(stdout: str, stderr: str) -> str:
    return "\n".join(part.rstrip() for part in (stdout, stderr) if part.strip())


def planned_batches(config: JobConfiguration) -> list[dict[str, Any]]:
    """A generated stage's batches as its mapped batch tasks read them (one XCom each):
    what a static stage's render gives each batch's operators, plus the batches it follows
    (`after`: their jobs; `after_index`: their map indexes)."""
    plan = merge_arrays(plan_batches(config), config)
    jobs = config.jobs_by_name()
    groups = config.groups_by_name()
    index_of = {batch.name: i for i, batch in enumerate(plan.batches)}
    jobs_of = {batch.name: list(batch.jobs) for batch in plan.batches}
    planned = []
    for batch in plan.batches:
        group = groups[batch.group]
        planned.append(
            {
                "name": batch.name,
                "jobs": jobs_of[batch.name],
                "spec": batch_spec(config, plan, batch, jobs).to_dict(),
                "slurm": group.slurm.model_dump(mode="json"),
                "container": group.container.model_dump(mode="json") if group.container else None,
                "retry": group.retry.model_dump(mode="json") if group.retry else None,
                "array": batch.array,
                "array_throttle": group.max_concurrent_batches if batch.array else None,
                "max_concurrent_batches": group.max_concurrent_batches,
                "after": {dep: jobs_of[dep] for dep in batch.depends_on},
                "after_index": [index_of[dep] for dep in batch.depends_on],
            }
        )
    return planned


def stage_entries(pipeline: Pipeline, pipeline_file: str | os.PathLike[str]) -> list[StageEntry]:
    """The manifest's stages: what the pipeline DAG's `pipeline.json` says of them too."""
    return [
        StageEntry(
            name=stage.name,
            number=number,
            kind=GENERATED if stage.is_generated else CONFIG,
            config_file=resolve_config_file(pipeline_file, stage) if stage.config_file else None,
            command=stage.command,
            on_failure=stage.on_failure,
        )
        for number, stage in enumerate(pipeline.stages, 1)
    ]
