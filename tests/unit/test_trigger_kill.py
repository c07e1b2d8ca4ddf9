"""on_kill cancels the job after a user's action, never when a triggerer merely drops a
trigger that Airflow reassigned (its task instance still waits, deferred)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

from airflow_jobforge.triggers.slurm import SlurmJobTrigger


class RecordingClient:
    def __init__(self) -> None:
        self.canceled: list[str] = []

    async def cancel(self, ids: list[str]) -> None:
        self.canceled += ids

    async def close(self) -> None:
        pass


def killed(monkeypatch, state: str | Exception | None) -> list[str]:
    client = RecordingClient()
    trigger = SlurmJobTrigger("42", None, {"backend": "slurm", "resolved_": True})
    monkeypatch.setattr(trigger, "_hook", lambda: SimpleNamespace(get_async_client=lambda: client))
    if state is not None:
        trigger.task_instance = SimpleNamespace(dag_id="d", task_id="g.wait_0000", run_id="r")

        def states(**query):
            assert query == {"dag_id": "d", "task_ids": ["g.wait_0000"], "run_ids": ["r"]}
            if isinstance(state, Exception):
                raise state
            return {"r": {"g.wait_0000": state}}

        monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(states))
    asyncio.run(trigger.on_kill())
    return client.canceled


@pytest.mark.parametrize("state", ["failed", "success", "scheduled", "up_for_retry"])
def test_a_user_action_on_the_waiting_task_cancels_its_job(monkeypatch, state):
    assert killed(monkeypatch, state) == ["42"]


def test_a_reassigned_trigger_leaves_the_healthy_job_alone(monkeypatch):
    assert killed(monkeypatch, "deferred") == []


def test_an_unknown_task_state_never_cancels(monkeypatch):
    assert killed(monkeypatch, ConnectionError("api server away")) == []


def test_a_trigger_run_by_hand_cancels_as_before(monkeypatch):
    assert killed(monkeypatch, None) == ["42"]


def test_a_kill_cut_short_by_the_triggerers_repeated_cancel_still_cancels_the_job(monkeypatch):
    """The triggerer cancels a trigger again at every state sync until it ended."""
    import time

    client = RecordingClient()
    trigger = SlurmJobTrigger("42", None, {"backend": "slurm", "resolved_": True})
    monkeypatch.setattr(trigger, "_hook", lambda: SimpleNamespace(get_async_client=lambda: client))
    trigger.task_instance = SimpleNamespace(dag_id="d", task_id="t", run_id="r")

    def slow_states(**query):
        time.sleep(0.5)  # the supervisor answers slowly: 20 kills queue up behind each other
        return {"r": {"t": "failed"}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(slow_states))

    async def scenario() -> None:
        kill = asyncio.ensure_future(trigger.on_kill())
        await asyncio.sleep(0.1)
        kill.cancel()  # the next state sync
        with pytest.raises(asyncio.CancelledError):
            await kill
        await asyncio.sleep(1.0)

    asyncio.run(scenario())
    assert client.canceled == ["42"]


@pytest.mark.parametrize(
    ("state", "cancels"), [("running", False), ("failed", True), ("restarting", True)]
)
def test_a_poking_wait_cancels_on_a_users_kill_only_not_on_its_workers_shutdown(
    monkeypatch, state, cancels
):
    """Seen in the deployment: a worker's executor terminated its tasks, and the submit
    task's on_kill canceled the batch it had just submitted (its retry then adopted a
    CANCELLED job)."""
    from airflow_jobforge.sensors.slurm import SlurmJobSensor

    canceled: list[list[str]] = []
    client = SimpleNamespace(cancel=canceled.append, close=lambda: None)
    sensor = SlurmJobSensor(
        task_id="wait", submit_task_id="submit", cluster={"backend": "slurm"}, deferrable=False
    )
    monkeypatch.setattr(
        SlurmJobSensor, "hook", property(lambda self: SimpleNamespace(get_client=lambda: client))
    )
    sensor._job = {"job_id": "42"}
    sensor._task_key = ("d", "g.wait_0000", "r")

    def states(**query):
        return {"r": {"g.wait_0000": state}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(states))
    sensor.on_kill()
    assert canceled == ([["42"]] if cancels else [])
