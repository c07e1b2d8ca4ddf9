"""The head-only in-process Execution API of `jobforge run` serves what Airflow's own app
serves to the installed Task SDK: same routes, same handlers, same auth bypass."""

from __future__ import annotations

import attrs
import pytest
import svcs
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from airflow_jobforge.embedded import execution_api


def _routes(routes: list) -> dict[tuple[str, frozenset[str]], object]:
    return {(r.path, frozenset(r.methods)): r.endpoint for r in routes if isinstance(r, APIRoute)}


@pytest.fixture(autouse=True)
def jwt_secret(monkeypatch):
    """Airflow 3.1's lifespan builds the JWT validator, which wants a secret (3.2+: lazily)."""
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "jobforge-unit-tests")


def test_head_only_app_has_exactly_the_routes_airflow_serves_the_sdk_version():
    from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI, lifespan
    from airflow.api_fastapi.execution_api.routes import execution_api_router
    from airflow.sdk.api.datamodels._generated import API_VERSION
    from cadwyn.route_generation import _DELETED_ROUTE_TAG

    assert execution_api.serves_newest_only()
    stock = InProcessExecutionAPI().app  # Airflow's own, with Cadwyn
    with TestClient(stock) as client:  # Cadwyn builds its versioned routers on first request
        assert client.get("/health", headers={"Airflow-API-Version": API_VERSION}).is_success
    expected = _routes(stock.router.versioned_routers[API_VERSION].routes)

    ours = execution_api.head_only_app(attrs.evolve(lifespan, registry=svcs.Registry()))
    got = _routes(ours.routes)
    assert set(got) == set(expected)
    # Routes only older versions serve (3.3: /dag-runs/{dag_id}/previous) are not mounted.
    deleted = _routes(
        [r for r in execution_api_router.routes if _DELETED_ROUTE_TAG in (r.tags or [])]
    )
    assert not set(deleted) & set(got)
    for key, endpoint in got.items():
        assert getattr(endpoint, "__name__", None) == getattr(expected[key], "__name__", None)


def test_install_hands_dag_test_the_head_only_app(monkeypatch):
    from airflow.sdk.execution_time import supervisor

    monkeypatch.setattr(supervisor, "in_process_api_server", supervisor.in_process_api_server)
    monkeypatch.setattr(execution_api, "_installed", [])
    assert execution_api.install()
    api = supervisor.in_process_api_server()
    assert "newest version only" in api.app.title
    # InProcessExecutionAPI's own auth bypass is in place: a task can start without a token.
    with TestClient(api.app) as client:
        assert client.get("/health").is_success
        assert client.get("/variables/keys").status_code not in (401, 403)


def test_stock_app_on_request(monkeypatch):
    monkeypatch.setenv(execution_api.STOCK_ENV, "1")
    monkeypatch.setattr(execution_api, "_installed", [])
    assert not execution_api.install()
