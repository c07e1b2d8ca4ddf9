"""JobForgeCommandOperator: the config's setup/teardown command, where jobs are submitted."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator

from airflow_jobforge.airflow_compat import AirflowException
from airflow_jobforge.operators.base import ClusterMixin


class JobForgeCommandOperator(ClusterMixin, BaseOperator):
    """Runs a config's `setup_command` or `teardown_command` once per DAG run, by bash, where
    batches are submitted (the worker, or the login node over SSH); non-zero exit fails it.

    :param command: the shell command, run as `bash -c COMMAND`
    :param cluster: `ClusterSettings` as a dict (backend, connections)
    """

    ui_color = "#eeeeee"

    def __init__(self, *, command: str, cluster: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.command = command
        self.cluster = cluster

    def execute(self, context: Any) -> None:
        rc, out, err = self.hook.run_command(self.command)
        if out.strip():
            self.log.info("stdout:\n%s", out[-10000:])
        if err.strip():
            self.log.info("stderr:\n%s", err[-10000:])
        if rc != 0:
            raise AirflowException(f"command exited with {rc}: {self.command}")
