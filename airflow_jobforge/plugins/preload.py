"""Import jobforge's task code once in each Airflow job process, before it forks workers.

The LocalExecutor forks every task process from the scheduler (through its workers), and
each of them imports the DAG file, hence `airflow_jobforge.dag.factory` and every operator,
sensor, hook and config model behind it: ~60 ms of CPU on an idle machine, and most of a
task's start-up under load (sampled with py-spy over a 20-batch run on the 2-CPU test
machine: 83% of the DAG file's parse in the task processes was that import). Imported here,
in the scheduler's `on_starting` (the Job is built before the executor starts its workers),
every task process inherits the modules and only runs the DAG file.

Also in the triggerer (which imports the triggers anyway) and the dag-processor (which
pre-imports what DAG files import anyway). Set `[jobforge] preload = False`
(`AIRFLOW__JOBFORGE__PRELOAD=False`) to import per task instead.

The price: an upgraded airflow-jobforge reaches tasks only after the scheduler restarts,
as it reaches triggers only after the triggerer restarts (scripts/airflow/start.sh
restarts the components when the package's code changed).
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)


@hookimpl
def on_starting(component: Any) -> None:
    if type(component).__name__ != "Job":  # a task process (TaskRunnerMarker) has them
        return
    from airflow.configuration import conf

    if not conf.getboolean("jobforge", "preload", fallback=True):
        return
    try:
        preload()
    except Exception:  # a task imports them itself and reports what is wrong there
        log.exception("jobforge: preloading the task code failed")


def preload() -> None:
    """Import what a jobforge task imports, and load the plugins as the Task SDK does for
    every task (an entry-point scan: 5.6% of a task process's samples in the same run)."""
    from airflow_jobforge.airflow_compat import integrate_macros_plugins

    integrate_macros_plugins()
    import airflow_jobforge.dag.factory
    import airflow_jobforge.operators.command
    import airflow_jobforge.operators.post_process
    import airflow_jobforge.operators.results
    import airflow_jobforge.operators.submit
    import airflow_jobforge.sensors.slurm
    import airflow_jobforge.triggers.slurm  # noqa: F401
