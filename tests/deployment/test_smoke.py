"""The deployment runs a DAG end to end: parsed by the dag-processor, triggered through the
REST API, scheduled by the scheduler, run by a LocalExecutor worker through the Execution API."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.deployment

SMOKE_DAG = """
from airflow.sdk import dag, task


@dag(dag_id="jobforge_smoke", schedule=None, catchup=False)
def jobforge_smoke():
    @task
    def one(**context):
        print("smoke param", context["params"]["greeting"])
        return 1

    @task
    def plus_one(x):
        return x + 1

    plus_one(one())


jobforge_smoke()
"""


def test_a_triggered_dag_runs_to_success_with_its_conf_and_logs(deployment):
    deployment.write_dag("jobforge_smoke.py", SMOKE_DAG)
    try:
        deployment.wait_dag("jobforge_smoke", timeout=60)
        deployment.unpause("jobforge_smoke")
        run_id = deployment.trigger("jobforge_smoke", conf={"greeting": "hello"})

        assert deployment.wait_run("jobforge_smoke", run_id, timeout=120) == "success"
        assert deployment.task_states("jobforge_smoke", run_id) == {
            "one": "success",
            "plus_one": "success",
        }
        log = deployment.task_log("jobforge_smoke", run_id, "one", try_number=1)
        assert "smoke param hello" in log
        assert "Returned value was: 1" in log
    finally:
        deployment.remove_dag("jobforge_smoke.py")
