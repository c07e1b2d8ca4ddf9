"""The default extension: each job is a shell command run by bash."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from airflow_jobforge.config.models import Job, JobConfiguration
from airflow_jobforge.extensions.registry import Extension
from airflow_jobforge.rundir.batches import JobSpec


class GenericCommandExecution:
    """How the node runner starts a job of this extension."""

    @staticmethod
    def argv(job: JobSpec) -> list[str]:
        return ["bash", "-c", job.command]


def read_commands(path: str | Path) -> list[str]:
    """One command per line; blank lines and lines starting with '#' are skipped."""
    commands = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            commands.append(stripped)
    return commands


def jobs_from_commands(
    commands: Sequence[str],
    *,
    group: str | None = None,
    minutes_per_job: float | None = None,
    cancel_on_blocking_job_failure: bool = False,
    append_output_dir: str | None = None,
    start: int = 1,
) -> list[Job]:
    """Jobs named by their 1-based line index, like JADE's job_id."""
    jobs = []
    for i, command in enumerate(commands, start=start):
        if append_output_dir:
            command = f"{command} {append_output_dir}"
        jobs.append(
            Job(
                name=str(i),
                command=command,
                submission_group=group,
                estimated_run_minutes=minutes_per_job,
                cancel_on_blocking_job_failure=cancel_on_blocking_job_failure,
            )
        )
    return jobs


class GenericCommandCli:
    """`jobforge auto-config generic_command FILE...`: one job per command line of the files."""

    @staticmethod
    def auto_config(*inputs: str, **kwargs: Any) -> JobConfiguration:
        commands: list[str] = []
        for path in inputs:
            commands.extend(read_commands(path))
        post: Any = kwargs.get("job_post_process_config")
        return JobConfiguration(jobs=jobs_from_commands(commands), job_post_process_config=post)

    @staticmethod
    def describe(inputs: Iterable[str]) -> str:
        return "one job per line of " + ", ".join(inputs)


EXTENSION = Extension(
    name="generic_command",
    description="Run each job's command with bash",
    parameters_class="airflow_jobforge.config.models:Job",
    execution_class="airflow_jobforge.extensions.generic_command:GenericCommandExecution",
    cli_class="airflow_jobforge.extensions.generic_command:GenericCommandCli",
)
