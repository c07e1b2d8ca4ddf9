"""The only task of a placeholder DAG whose config is broken: fails with the config's error."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator

from airflow_jobforge.airflow_compat import AirflowFailException


class ConfigErrorOperator(BaseOperator):
    ui_color = "#f4cccc"

    def __init__(self, *, error: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def execute(self, context: Any) -> None:
        raise AirflowFailException(self.error)
