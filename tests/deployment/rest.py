"""A small client for the REST API of the real Airflow deployment (scripts/airflow/start.sh).

Tokens: the deployment runs the simple auth manager with all-admins on, so `GET /auth/token`
hands out an admin JWT without credentials; the client fetches one lazily and again on a 401.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import httpx

FINISHED_RUN_STATES = frozenset({"success", "failed"})


class ApiError(AssertionError):
    """An unexpected HTTP status, with the response body (tests show it as their failure)."""


def _quote(value: str) -> str:
    # Manual run ids hold ':' and '+' (manual__2026-01-01T00:00:00+00:00): quote every byte.
    return quote(value, safe="")


def _bad_token(response: httpx.Response) -> bool:
    if response.status_code == 401:
        return True
    return response.status_code == 403 and "Invalid JWT token" in response.text


def log_text(events: Iterable[Any]) -> str:
    """Airflow 3 task logs are structured events; make them read like a log file."""
    lines = []
    for event in events:
        if isinstance(event, str):
            lines.append(event)
            continue
        parts = [str(event[key]) for key in ("timestamp", "level") if event.get(key) is not None]
        if event.get("logger"):
            parts.append(f"{event['logger']}:")
        parts.append(str(event.get("event", "")))
        lines.append(" ".join(parts))
        for detail in event.get("error_detail") or []:
            lines.append("Traceback (most recent call last):")
            for frame in detail.get("frames") or []:
                lines.append(
                    f'  File "{frame.get("filename")}", line {frame.get("lineno")}, '
                    f"in {frame.get('name')}"
                )
            lines.append(f"{detail.get('exc_type')}: {detail.get('exc_value')}")
    return "\n".join(lines) + "\n"


class AirflowClient:
    """REST calls with a bearer token, plus the few steps tests repeat."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    # --- transport -------------------------------------------------------------------------
    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.fetch_token()
        return self._token

    def fetch_token(self) -> str:
        response = self.http.get("/auth/token")
        if response.status_code not in (200, 201):
            raise ApiError(f"GET /auth/token: HTTP {response.status_code}: {response.text}")
        return response.json()["access_token"]

    def request(self, method: str, path: str, *, expect: Iterable[int] = (200,), **kw: Any):
        """One call; a token the api-server rejects (expired: 401; signed with other keys, e.g.
        after the state dir was wiped: 403 'Invalid JWT token') is re-fetched once. Any status
        outside `expect` raises ApiError."""
        extra_headers = kw.pop("headers", {})
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token}", **extra_headers}
            response = self.http.request(method, path, headers=headers, **kw)
            if attempt == 2 or not _bad_token(response):
                break
            self._token = None
        if response.status_code not in tuple(expect):
            raise ApiError(f"{method} {path}: HTTP {response.status_code}: {response.text[:2000]}")
        return response

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).json()

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json=json, **kw).json()

    def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("PATCH", path, json=json, **kw).json()

    def delete(self, path: str, **kw: Any) -> None:
        self.request("DELETE", path, expect=kw.pop("expect", (204,)), **kw)

    def paged(self, path: str, key: str, limit: int = 100, **params: Any) -> list[dict]:
        """Every item of a list endpoint (the API caps a page at 100)."""
        items: list[dict] = []
        while True:
            page = self.get(path, params={**params, "limit": limit, "offset": len(items)})
            items += page[key]
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    # --- DAGs ------------------------------------------------------------------------------
    def dag(self, dag_id: str) -> dict | None:
        response = self.request("GET", f"/api/v2/dags/{_quote(dag_id)}", expect=(200, 404))
        return response.json() if response.status_code == 200 else None

    def wait_dag(self, dag_id: str, timeout: float = 60.0) -> dict:
        """Until the dag-processor has parsed and serialized `dag_id`. Fails early, with the
        traceback, when the DAG's file has an import error."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                dag = self.dag(dag_id)
            except httpx.TransportError:  # an api-server restarting (fault tests)
                dag = None
            if dag is not None and not dag.get("is_stale"):
                return dag
            if time.monotonic() > deadline:
                errors = "\n".join(
                    f"{e['filename']}:\n{e['stack_trace']}" for e in self.import_errors()
                )
                raise TimeoutError(
                    f"DAG {dag_id} not visible after {timeout:.0f}s; "
                    f"import errors:\n{errors or '(none)'}"
                )
            time.sleep(0.5)

    def import_errors(self) -> list[dict]:
        """[{'filename', 'stack_trace', 'bundle_name', 'timestamp', 'import_error_id'}, ...]"""
        return self.paged("/api/v2/importErrors", "import_errors")

    def unpause(self, dag_id: str) -> dict:
        return self.patch(f"/api/v2/dags/{_quote(dag_id)}", json={"is_paused": False})

    def pause(self, dag_id: str) -> dict:
        return self.patch(f"/api/v2/dags/{_quote(dag_id)}", json={"is_paused": True})

    # --- runs ------------------------------------------------------------------------------
    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> str:
        """A manual run (conf overrides the DAG's params); returns its run id. The DAG must be
        unpaused for the scheduler to start it."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self.post(f"/api/v2/dags/{_quote(dag_id)}/dagRuns", json=body)["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}")

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 120.0,
        states: Iterable[str] = FINISHED_RUN_STATES,
        poll_s: float = 0.5,
    ) -> str:
        """Until the run reaches one of `states` (default: finished); returns the state.
        Each look costs the api-server ~50 ms of CPU: benchmarks look less often."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        state = None
        while True:
            try:
                state = self.run(dag_id, run_id)["state"]
            except httpx.TransportError:  # an api-server restarting (fault tests)
                pass
            if state in wanted:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {dag_id}/{run_id} still {state} after {timeout:.0f}s; "
                    f"tasks: {self.task_states(dag_id, run_id)}"
                )
            time.sleep(poll_s)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.paged(
            f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances",
            "task_instances",
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """task id -> state; a mapped task's instances appear as 'task_id[map_index]'."""
        return {
            ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]": ti[
                "state"
            ]
            for ti in self.task_instances(dag_id, run_id)
        }

    def clear(self, dag_id: str, run_id: str, task_ids: list[str], **options: Any) -> list[dict]:
        """What a user's 'Clear' does: the task instances go back to no state (try_number + 1
        when they run again) and the run to queued. Returns the cleared task instances."""
        body = {
            "dag_run_id": run_id,
            "task_ids": task_ids,
            "only_failed": False,
            "dry_run": False,
            "reset_dag_runs": True,
            **options,
        }
        return self.post(f"/api/v2/dags/{_quote(dag_id)}/clearTaskInstances", json=body)[
            "task_instances"
        ]

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> dict:
        """A user marking a task instance (e.g. 'failed' to kill a running one); the answer
        is {'task_instances': [...], 'total_entries': n}."""
        return self.patch(
            f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances/{_quote(task_id)}",
            json={"new_state": state},
        )

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        """The task's log as text (Airflow 3 serves structured events; see `log_text`)."""
        body = self.get(
            f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances/"
            f"{_quote(task_id)}/logs/{try_number}",
            params={"full_content": True, "map_index": map_index},
            headers={"Accept": "application/json"},
        )
        return log_text(body["content"])
