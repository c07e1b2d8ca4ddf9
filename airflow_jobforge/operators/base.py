"""What the provider's operators share: the cluster they talk to, and the DAG run key."""

from __future__ import annotations

from typing import Any

from airflow_jobforge.execution import run_key, safe_run_id
from airflow_jobforge.hooks.slurm import ClusterSettings, SlurmHook


class ClusterMixin:
    """`cluster` is ClusterSettings as a dict: plain data that serializes with the DAG."""

    cluster: dict[str, Any]

    @property
    def hook(self) -> SlurmHook:
        return SlurmHook.from_settings(ClusterSettings(**self.cluster))

    @property
    def settings(self) -> ClusterSettings:
        """Resolved at run time (reads the `slurm` connection once per call)."""
        return ClusterSettings(**self.cluster).resolved()


def context_run_key(context: Any) -> str:
    return run_key(context["dag"].dag_id, context["run_id"])


def run_output_dir(base: str, context: Any) -> str:
    """Each DAG run writes under its own directory: records of other runs never mix in."""
    return f"{base.rstrip('/')}/{safe_run_id(context['run_id'])}"


def job_info(job: Any, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """XCom form of a SubmittedJob (what sensors and result tasks pull)."""
    return {
        "job_id": job.job_id,
        "job_name": job.job_name,
        "slurm_dir": job.slurm_dir,
        "adopted": job.adopted,
        "exit_file": job.exit_file,
        "stdout": job.stdout_path,
        "stderr": job.stderr_path,
        "request": request,
    }
