"""The batch tasks of a generated stage: the static ones, told their batch at run time.

A stage whose config a command writes at run time cannot be planned when the DAG is parsed.
Its plan task plans it then and pushes one XCom per batch (`batch_<i>`, see `operators.stage`);
the stage's batch tasks are one mapped task group, a map index per batch, and each task reads
its batch from that XCom before it runs (`render_template_fields` runs before `execute` and
before every resume from a deferral). From there they are the static tasks unchanged: the
same adoption by tag (a retry never submits twice), the shared poller, the records, the rerun
of a cleared results task.

One thing differs: a batch cannot have an edge to another instance of the same mapped group,
so `blocked_by` across batches is a wait in the submit task (`BlockersTrigger`).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_jobforge.airflow_compat import AirflowFailException, AirflowRescheduleException
from airflow_jobforge.operators.base import run_output_dir
from airflow_jobforge.operators.results import BatchResultOperator
from airflow_jobforge.operators.submit import SlurmSubmitOperator
from airflow_jobforge.triggers.blockers import BlockersTrigger
from airflow_jobforge.triggers.resume import not_before

BATCH_KEY = "batch_{index}"
BLOCKERS_DEFER_S = 600.0
"""How long a submit waits in the triggerer for its blockers' records before it looks at
their wait tasks again (a wait that failed for good leaves no records)."""
ENDED = ("success", "failed", "upstream_failed", "skipped", "removed")


def planned_batch(context: Any, plan_task_id: str) -> dict[str, Any]:
    """This map index's batch, as the stage's plan task pushed it."""
    ti = context["ti"]
    batch = ti.xcom_pull(
        task_ids=plan_task_id, key=BATCH_KEY.format(index=ti.map_index), map_indexes=-1
    )
    if not batch:
        raise AirflowFailException(
            f"no planned batch {ti.map_index} in the XCom of {plan_task_id}: clear the plan task"
        )
    return batch


class FromPlan:
    """Reads the batch before every run of the task (first try, retry, resume)."""

    plan_task_id: str

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]
        self.take(planned_batch(context, self.plan_task_id))

    def take(self, batch: dict[str, Any]) -> None:
        raise NotImplementedError


class PlannedSubmitOperator(FromPlan, SlurmSubmitOperator):
    """`SlurmSubmitOperator` of a generated stage's batch; first waits for the batches it
    follows (`blocked_by` across batches).

    :param plan_task_id: the stage's plan task
    :param wait_task_id: the batch's wait task (the mapped group's), whose instances for
        the batches this one follows are looked at when their records are slow to come
    """

    def __init__(self, *, plan_task_id: str, wait_task_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("batch", {})
        kwargs.setdefault("slurm", {})
        super().__init__(**kwargs)
        self.plan_task_id = plan_task_id
        self.wait_task_id = wait_task_id
        self.after: dict[str, list[str]] = {}
        self.after_index: list[int] = []

    def take(self, batch: dict[str, Any]) -> None:
        self.batch = batch["spec"]
        self.slurm = batch["slurm"]
        self.container = batch.get("container")
        self.max_concurrent_batches = batch.get("max_concurrent_batches")
        self.array = bool(batch.get("array"))
        self.array_throttle = batch.get("array_throttle")
        self.after = batch.get("after") or {}
        self.after_index = list(batch.get("after_index") or [])

    def execute(self, context: Any) -> Any:
        if self.after:
            self._wait_for_blockers(context, None)
        return super().execute(context)

    def blockers_done(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        self._wait_for_blockers(context, event)
        return super().execute(context)

    def _wait_for_blockers(self, context: Any, event: dict[str, Any] | None) -> None:
        """Return once the batches this one follows ended, else wait for them.

        They ended when each one's records are all there (the trigger says "ready") or its
        wait task ended (any state: what a static stage's ALL_DONE edge `wait_A >> submit_B`
        waits for). Waiting defers while they run, so that no worker slot is held; while one
        is not even submitted, and after a long deferral without its records, it reschedules
        instead: `jobforge run` (dag.test) runs a deferred task's trigger in line, and would
        otherwise never run the tasks the records depend on."""
        if (event or {}).get("status") == "ready":
            return
        states = self._states(context)
        waits = [str(states.get(f"{self.wait_task_id}_{i}")) for i in self.after_index]
        if all(state in ENDED for state in waits):
            return
        submits = [str(states.get(f"{self.task_id}_{i}")) for i in self.after_index]
        name = self.batch.get("batch")
        if event is None and all(state == "success" for state in submits):
            self.log.info(
                "batch %s follows %s: waiting for their records", name, ", ".join(self.after)
            )
            self.defer(
                trigger=BlockersTrigger(
                    asdict(self.settings),
                    run_output_dir(self.output_dir, context),
                    self.after,
                    poll_interval=max(self.queue_poll_interval, 2.0),
                    timeout=BLOCKERS_DEFER_S,
                    not_before=not_before(),
                ),
                method_name="blockers_done",
            )
        self.log.info(
            "batch %s follows %s: not ended yet; looking again later", name, ", ".join(self.after)
        )
        raise AirflowRescheduleException(
            datetime.now(timezone.utc) + timedelta(seconds=max(self.queue_poll_interval, 5.0))
        )

    def _states(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        run_id = context["run_id"]
        return RuntimeTaskInstance.get_task_states(
            dag_id=context["dag"].dag_id,
            task_ids=[self.wait_task_id, self.task_id],
            run_ids=[run_id],
        ).get(run_id, {})


class PlannedBatchResultOperator(FromPlan, BatchResultOperator):
    """`BatchResultOperator` of a generated stage's batch: clearing it re-runs the batch's
    jobs that did not succeed, alone.

    :param plan_task_id: the stage's plan task
    """

    def __init__(self, *, plan_task_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("jobs", [])
        kwargs.setdefault("batch", "")
        super().__init__(**kwargs)
        self.plan_task_id = plan_task_id

    def take(self, batch: dict[str, Any]) -> None:
        self.jobs = list(batch["jobs"])
        self.batch = batch["name"]
        self.batch_spec = batch["spec"]
