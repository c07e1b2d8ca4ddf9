"""A user extension for the registry tests: runs each command twice."""

from __future__ import annotations

from airflow_jobforge.rundir.batches import JobSpec


class EchoTwiceExecution:
    @staticmethod
    def argv(job: JobSpec) -> list[str]:
        return ["bash", "-c", f"{job.command}; {job.command}"]
