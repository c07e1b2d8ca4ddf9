"""The results page's FastAPI app, mounted by the api-server at `/jobforge`.

Routes (all under one DAG run, `/dags/{dag_id}/runs/{run_id}`):
  GET  ``            the page (HTML; its script calls the routes below)
  GET  `/data`       the job table, counts, run state, whether a report exists
  GET  `/jobs/{job}/{out|err}`   the tail of a job's stdout/stderr
  GET  `/report`     the run's report.html (sandboxed: it runs in an opaque origin)
  POST `/resubmit`   a new run of the DAG with conf `rerun_of` = this run
Of a pipeline run, `/data` also lists the stages, and the GET routes take `?stage=NAME`
(default: `rundata.default_stage`): the stage whose jobs, output and report they serve.

Auth is Airflow's own: each route depends on `requires_access_dag` (core_api.security),
which resolves the user from an `Authorization: Bearer` header or, in the browser, the
`_token` cookie the UI sets, and asks the auth manager about this DAG: reading the page
needs the run's GET permission, output tails the task logs' GET permission, a resubmit the
run's POST permission (as the REST API's trigger does). Plain dependencies, not
`AuthManagerDep`/`DagBagDep`: those read `request.app.state`, which in a mounted app is
this app's state, not the api-server's.

The run dir is found in the run's XCom (a `pipeline_run_dir`, a summary's `run_dir`, else a
submit task's request) and read on the api-server's own file system (`rundata`).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.api_fastapi.logging.decorators import action_logging
from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.plugins import rundata

RUN = "/dags/{dag_id}/runs/{run_id}"
FINISHED = ("success", "failed")
PAGE = files("airflow_jobforge.plugins").joinpath("results_page.html")

can_read_run = Depends(requires_access_dag("GET", DagAccessEntity.RUN))
can_read_logs = Depends(requires_access_dag("GET", DagAccessEntity.TASK_LOGS))
can_trigger = Depends(requires_access_dag("POST", DagAccessEntity.RUN))


class ResubmitBody(BaseModel):
    rerun: list[str] = list(rundata.DEFAULT_RERUN)


def dag_run(session: Session, dag_id: str, run_id: str) -> DagRun:
    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"DAG run {dag_id}/{run_id} not found")
    return run


def run_state(run: DagRun) -> str:
    """'queued', 'running', 'success' or 'failed' (the enum's value, not its repr)."""
    return str(getattr(run.state, "value", run.state))


def xcom_entries(session: Session, dag_id: str, run_id: str) -> list[tuple[str, str, Any]]:
    """The XComs that can name the run dir: a `pipeline_run_dir`, the summaries' `run_dir`
    (a pipeline stage's too), the submit tasks' return values (LIKE narrows;
    `rundata.find_run_location` matches exactly). Never the job tasks' own: a 10,000-job run
    has 10,000 of them."""
    rows = session.execute(
        select(XComModel.task_id, XComModel.key, XComModel.value).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.map_index == -1,
            or_(
                XComModel.key == rundata.PIPELINE_RUN_DIR_KEY,
                and_(
                    XComModel.task_id.like("%" + rundata.SUMMARY_TASK),
                    XComModel.key == rundata.RUN_DIR_KEY,
                ),
                and_(XComModel.key == "return_value", XComModel.task_id.like("%submit%")),
            ),
        )
    ).all()
    return [(row.task_id, row.key, XComModel.deserialize_value(row)) for row in rows]


def run_dir_of(session: Session, dag_id: str, run_id: str) -> rundata.RunLocation:
    """Where the run's results are; 404 with the reason when no task named it yet."""
    location = rundata.find_run_location(xcom_entries(session, dag_id, run_id))
    if location.run_dir is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "no jobforge run directory is known for this run yet: no submit task has run "
            "(or this is no jobforge DAG)",
        )
    return location


def readable_run_dir(session: Session, dag_id: str, run_id: str, stage: str | None) -> str:
    """The run dir, or of a pipeline run the stage's dir."""
    location = run_dir_of(session, dag_id, run_id)
    try:
        return str(rundata.results_dir(location.run_dir or "", stage))
    except JobForgeError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def create_app() -> FastAPI:
    app = FastAPI(
        title="jobforge results",
        description="The jobforge results page of a DAG run and its data",
        # No schema or docs pages: every route of this app is behind Airflow's auth.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.get(RUN, response_class=HTMLResponse, dependencies=[can_read_run])
    def results_page(dag_id: str, run_id: str) -> HTMLResponse:
        del dag_id, run_id  # the page's script reads them from its own URL
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get(RUN + "/data", dependencies=[can_read_run])
    def results_data(
        dag_id: str, run_id: str, session: SessionDep, stage: str | None = None
    ) -> dict[str, Any]:
        run = dag_run(session, dag_id, run_id)
        conf = run.conf or {}
        head = {
            "dag_id": dag_id,
            "run_id": run_id,
            "run_state": run_state(run),
            "rerun_of": conf.get("rerun_of") if isinstance(conf, dict) else None,
        }
        try:
            location = run_dir_of(session, dag_id, run_id)
        except HTTPException as exc:
            return {**head, "available": False, "run_dir": None, "message": exc.detail}
        try:
            results = rundata.page_data(location, stage)
        except JobForgeError as exc:
            return {**head, "available": False, "run_dir": location.run_dir, "message": str(exc)}
        return {**head, "available": True, "message": "", **results}

    @app.get(RUN + "/jobs/{job}/{stream}", dependencies=[can_read_logs])
    def job_output(
        dag_id: str,
        run_id: str,
        job: str,
        stream: str,
        session: SessionDep,
        lines: Annotated[int, Query(ge=1, le=1000)] = 40,
        stage: str | None = None,
    ) -> dict[str, Any]:
        try:  # before any path is built from the name
            rundata.check_output_request(job, stream)
        except JobForgeError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        run_dir = readable_run_dir(session, dag_id, run_id, stage)
        return rundata.job_output(run_dir, job, stream, lines)

    @app.get(RUN + "/report", dependencies=[can_read_run])
    def report(
        dag_id: str, run_id: str, session: SessionDep, stage: str | None = None
    ) -> FileResponse:
        path = rundata.report_file(readable_run_dir(session, dag_id, run_id, stage))
        if path is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no report yet")
        # Its scripts run, but in an opaque origin, even when opened outside the page.
        return FileResponse(
            path,
            media_type="text/html",
            headers={"Content-Security-Policy": "sandbox allow-scripts"},
        )

    @app.post(
        RUN + "/resubmit",
        dependencies=[can_trigger, Depends(action_logging("jobforge_resubmit"))],
    )
    def resubmit(
        dag_id: str,
        run_id: str,
        user: GetUserDep,
        session: SessionDep,
        body: ResubmitBody | None = None,
    ) -> dict[str, Any]:
        rerun = (body or ResubmitBody()).rerun
        return trigger_rerun(session, dag_id, run_id, rerun, user.get_name())

    return app


def trigger_rerun(
    session: Session, dag_id: str, run_id: str, rerun: list[str], user_name: str
) -> dict[str, Any]:
    """Trigger the rerun the way the UI's trigger button does (`trigger_dag`, the api-server's
    code path), as the user who clicked."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.models.dag import DagModel
    from airflow.utils.types import DagRunTriggeredByType

    run = dag_run(session, dag_id, run_id)
    state = run_state(run)
    if state not in FINISHED:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"run {run_id} is {state}: resubmit its failed jobs once it has finished",
        )
    try:
        conf = rundata.rerun_conf(run_id, run.conf if isinstance(run.conf, dict) else None, rerun)
    except JobForgeError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    try:
        new = trigger_dag(
            dag_id,
            triggered_by=DagRunTriggeredByType.UI,
            triggering_user_name=user_name,
            conf=conf,
            note=f"jobforge: re-runs the {' and '.join(conf['rerun'])} jobs of {run_id}",
            session=session,
        )
    except DagNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except DagRunAlreadyExists as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except ValueError as exc:  # ParamValidationError too: the DAG's params refuse the conf
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    if new is None:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, "Airflow created no run")
    model = session.scalar(select(DagModel).where(DagModel.dag_id == dag_id))
    return {
        "dag_id": dag_id,
        "run_id": new.run_id,
        "conf": conf,
        "is_paused": bool(model and model.is_paused),
    }
