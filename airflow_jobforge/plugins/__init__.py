"""jobforge's Airflow UI plugin: a results page for every DAG run (a tab of the run's view).

How Airflow 3.3 takes it (read in airflow/plugins_manager.py, api_fastapi/app.py and the UI):
- The plugin is found through the `airflow.plugins` entry point (pyproject.toml): installing
  the package is all a deployment does.
- `fastapi_apps`: the api-server mounts each app at its `url_prefix` (not under /api/v2, /ui,
  /execution, /auth, /pluginsv2) in front of the UI's catch-all route, so the page and its
  JSON live on the api-server's own origin and the root app's middlewares (JWT cookie
  refresh, the simple auth manager's all-admins token) apply to it too.
- `external_views` with destination "dag_run" (others: "nav", "dag", "task",
  "task_instance", "base") add a tab to the DAG run view at
  `/dags/<dag>/runs/<run>/plugin/<url_route>`; the UI fills `{DAG_ID}` and `{RUN_ID}` (URL
  encoded) into `href` and shows it in an iframe sandboxed with "allow-scripts
  allow-same-origin allow-forms allow-downloads": scripts and same-origin fetches work
  (the `_token` cookie goes along), dialogs, pop-ups and top-level navigation do not. The
  tab shows on the runs of every DAG (3.3 has no per-DAG filter); for a DAG that is no
  jobforge DAG the page says it knows no run directory.
- Auth: the routes depend on Airflow's `requires_access_dag`, see `plugins/app.py`.

Every Airflow process loads plugins, each task's worker too (for macros and listeners):
the FastAPI app is built on first access, in the api-server only, so a task does not pay
for importing FastAPI.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_jobforge.plugins import preload

URL_PREFIX = "/jobforge"
RESULTS_VIEW = {
    "name": "Jobforge results",
    "href": URL_PREFIX + "/dags/{DAG_ID}/runs/{RUN_ID}",
    "destination": "dag_run",
    "url_route": "jobforge-results",
}


class JobforgePlugin(AirflowPlugin):
    """The results page (`plugins/app.py`) and its tab in the DAG run view; the listener
    that imports the task code before the scheduler forks task processes (`preload.py`)."""

    name = "jobforge"
    external_views = [RESULTS_VIEW]
    listeners = [preload]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from airflow_jobforge.plugins.app import create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "jobforge results"}]


__all__ = ["RESULTS_VIEW", "URL_PREFIX", "JobforgePlugin"]
