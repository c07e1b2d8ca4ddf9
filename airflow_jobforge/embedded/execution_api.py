"""The in-process Execution API of `jobforge run`, built for the one API version it serves.

`dag.test()` talks to Airflow's Task Execution API in the same process. Airflow builds that
app with Cadwyn, which on the first request generates routers for every API version it has
ever published (nine in Airflow 3.3) so that old workers can talk to a new server. Measured
on the 2-core test machine: 5-7 s of CPU before the first task may start, against 0.3 s for
the same routes mounted once. An embedded run has exactly one client, the Task SDK imported
next to the server, which speaks the newest version; older versions serve no one here.

So when the installed SDK speaks the server's newest version and that version is the head
(no head-only changes), the app is Airflow's own route handlers, middlewares, error
handlers, lifespan and in-process auth bypass (`InProcessExecutionAPI`), mounted without the
versioning layer. Otherwise, or with JOBFORGE_STOCK_EXECUTION_API=1, Airflow's stock app is
used unchanged. Deployed DAGs (scheduler, workers, API server) never come through here.
"""

from __future__ import annotations

import os
from typing import Any

STOCK_ENV = "JOBFORGE_STOCK_EXECUTION_API"
_installed: list[Any] = []  # the app of this process, once built


def head_only_app(lifespan: Any = None) -> Any:
    """`create_task_execution_api_app` without Cadwyn: the newest routes, mounted once.

    Airflow 3.1 calls it without a lifespan (its app's is the module's own) and has neither
    the correlation-id middleware nor the shared error handlers of later minors."""
    from airflow.api_fastapi.execution_api import app as execution_app
    from airflow.api_fastapi.execution_api.routes import execution_api_router
    from cadwyn.route_generation import _DELETED_ROUTE_TAG
    from fastapi import APIRouter, FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(
        title="Airflow Task Execution API (jobforge in-process, newest version only)",
        lifespan=lifespan if lifespan is not None else execution_app.lifespan,
        generate_unique_id_function=lambda route: route.name,
    )
    if hasattr(execution_app, "CorrelationIdMiddleware"):  # Airflow >= 3.2
        app.add_middleware(execution_app.CorrelationIdMiddleware)
    app.add_middleware(execution_app.JWTReissueMiddleware)
    newest = APIRouter()
    # Routes kept only for older versions (e.g. a moved endpoint's old path) are not head.
    newest.routes.extend(
        route
        for route in execution_api_router.routes
        if _DELETED_ROUTE_TAG not in (getattr(route, "tags", None) or [])
    )
    app.include_router(newest)
    try:  # Airflow >= 3.2
        from airflow.api_fastapi.common.exceptions import init_error_handlers
    except ImportError:
        pass
    else:
        init_error_handlers(app)

    @app.exception_handler(Exception)
    def handle_exceptions(request: Request, exc: Exception) -> JSONResponse:
        execution_app.logger.exception(
            "Handle died with an error", exc_info=(type(exc), exc, exc.__traceback__)
        )
        content = {"message": "Internal server error"}
        if correlation_id := request.headers.get("correlation-id"):
            content["correlation-id"] = correlation_id
        return JSONResponse(status_code=500, content=content)

    return app


def serves_newest_only() -> bool:
    """Whether the Task SDK here speaks the server's head version (so nothing else is needed)."""
    from airflow.api_fastapi.execution_api.versions import bundle
    from airflow.sdk.api.datamodels._generated import API_VERSION

    head_changes = getattr(bundle.head_version, "changes", ())
    return not head_changes and bundle.versions[0].value == API_VERSION


def install() -> bool:
    """Make `dag.test()` in this process use the head-only app; False when it keeps the stock one.

    The app is built here, once, and handed to the supervisor's `in_process_api_server`
    (a cached factory it looks up on every task), so every task and inline trigger of the
    run shares it, as they would share the stock one.
    """
    if os.environ.get(STOCK_ENV) == "1":
        return False
    if _installed:
        return True
    try:
        if not serves_newest_only():
            return False
        from airflow.api_fastapi.execution_api import app as execution_app
        from airflow.sdk.execution_time import supervisor

        api = execution_app.InProcessExecutionAPI()
        stock = execution_app.create_task_execution_api_app
        execution_app.create_task_execution_api_app = head_only_app
        try:
            api.app  # noqa: B018 - built now, through InProcessExecutionAPI's own overrides
        finally:
            execution_app.create_task_execution_api_app = stock
    except (ImportError, AttributeError):  # a different Airflow layout: keep the stock app
        return False
    supervisor.in_process_api_server = lambda: api
    _installed.append(api)
    return True
