"""The wait task of a generated stage's batch (see `operators.planned`)."""

from __future__ import annotations

from typing import Any

from airflow_jobforge.operators.planned import FromPlan
from airflow_jobforge.sensors.slurm import SlurmJobSensor


class PlannedJobSensor(FromPlan, SlurmJobSensor):
    """`SlurmJobSensor` of a generated stage's batch.

    :param plan_task_id: the stage's plan task
    """

    def __init__(self, *, plan_task_id: str, **kwargs: Any) -> None:
        # The scheduler cannot start it in the triggerer: the job is in a mapped XCom.
        kwargs["start_from_trigger"] = False
        super().__init__(**kwargs)
        self.plan_task_id = plan_task_id

    def take(self, batch: dict[str, Any]) -> None:
        self.batch = batch["spec"]
        self.retry = batch.get("retry")
