"""JobForgeCommandOperator: the config's setup/teardown command, where jobs are submitted."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from airflow_jobforge.operators.base import ClusterMixin


class JobForgeCommandOperator(ClusterMixin, BaseOperator):
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
