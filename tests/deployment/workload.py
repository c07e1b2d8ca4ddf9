"""What the deployment tests run: job configs and the DAG file that loads them.

One DAG file in the deployment's DAGs folder loads three config folders with `load_dags`,
the way a user deploys: `cli/` through the SLURM CLI on the worker, `ssh/` over SSH to the
loopback sshd as the cluster's test user, `scheduled/` on a schedule. Outputs go under a
world-writable shared dir, where the SSH user also finds its own copy of the package (the
node runner needs only the standard library and that package).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path("/tmp/jobforge-deployment")
SSH_CONN_ID = "jobforge_deploy_ssh"
DAG_FILE = "jobforge_deployment_tests.py"
ERRORS_FILE = "jobforge_deployment_errors.py"  # defines no DAG: the broken configs' errors
FANOUT = 20  # one-job batches waited for at once in the triggerer
SSH_BATCHES = 50  # batches of the SSH run whose logins are counted

SLOW_SUBMIT = SHARED / "slow-submit"  # present: the faults DAG's first submit parses slowly
SLOW_RESULT = SHARED / "slow-result"  # present: the faults DAG's first wait's resume holds
SPREAD = 40  # one-job batches waited for at once over two triggerers (the celery profile)

DAG_FILE_TEXT = '''"""Written by tests/deployment/workload.py: the deployment tests' DAGs."""
import os
import time
from datetime import datetime, timedelta

from airflow.sdk import get_parsing_context

from airflow_jobforge.dag.loading import load_dags

# A slow worker, on request: the fault test that kills a worker right after sbatch freezes
# the API server while this submit task parses; the task then gets through sbatch (no API
# call needed) and hangs at its XCom push.
_context = get_parsing_context()
if (_context.dag_id, _context.task_id) == ("jobforge_deploy_faults", "g.submit_0000") and (
    os.path.exists("{slow_submit}")
):
    time.sleep(5)
# ... and the first wait's resume on a worker (its first try starts in the triggerer, which
# parses no DAG file): the Celery fault test that kills a worker mid-result holds it here
# until it removes the file (60 s at most), once the rest of the run has settled.
if (_context.dag_id, _context.task_id) == ("jobforge_deploy_faults", "g.wait_0000") and (
    os.path.exists("{slow_result}")
):
    _until = time.monotonic() + 60
    while os.path.exists("{slow_result}") and time.monotonic() < _until:
        time.sleep(0.1)

# Faster infrastructure retries than jobforge's defaults, so fault tests end in minutes.
RETRIES = {{"retry_delay": timedelta(seconds=10), "max_retry_delay": timedelta(seconds=40)}}
COMMON = {{"default_args": RETRIES, "tags": ["jobforge", "deployment-test"]}}

load_dags("{shared}/configs/cli/*.json", globals(), backend="slurm",
          output_dir="{shared}/out", python="{python}", **COMMON)
load_dags("{shared}/configs/ssh/*.json", globals(), backend="slurm",
          ssh_conn_id="{ssh_conn_id}", output_dir="{shared}/out-ssh",
          python="/usr/bin/python3", pythonpath="{shared}/pkg", **COMMON)
load_dags("{shared}/configs/scheduled/*.json", globals(), backend="slurm",
          output_dir="{shared}/out", python="{python}", schedule="@hourly",
          start_date=datetime(2026, 1, 1), **COMMON)
'''


ERRORS_FILE_TEXT = '''"""Written by tests/deployment/workload.py: broken configs as this DAG file's
import errors (a file without DAGs, so the good DAGs of the folder stay live)."""
from airflow_jobforge.dag.loading import raise_config_errors

raise_config_errors("{shared}/configs/cli/*.json")
'''
BROKEN = "jobforge_deploy_broken"


def pipeline() -> dict[str, Any]:
    """examples/configs/pipeline.json, with sim_3 failing on its first run in a DAG run only
    (so a cleared job task's rerun can succeed)."""
    config = json.loads((REPO / "examples/configs/pipeline.json").read_text())
    flag = '"$JOBFORGE_OUTPUT_DIR/sim_3-ran-once"'
    for job in config["jobs"]:
        if job["name"] == "sim_3":
            job["command"] = f"echo sim 3 >&2; test -e {flag} || {{ touch {flag}; exit 1; }}"
    return config


def group(name: str, batch_size: int, arrays: bool = True, **slurm: Any) -> dict[str, Any]:
    return {
        "name": name,
        "slurm": {"walltime": "10", **slurm},
        "batching": {
            "per_node_batch_size": batch_size,
            "num_processes": 2,
            "job_arrays": arrays,
        },
    }


def configs() -> dict[str, dict[str, Any]]:
    """Relative path -> config. The DAG id is `jobforge_<file stem>`."""
    def jobs(names: list[str], command: str) -> list[dict[str, Any]]:
        return [{"name": n, "command": command} for n in names]

    return {
        "cli/deploy_pipeline.json": pipeline(),
        "ssh/deploy_pipeline_ssh.json": pipeline(),
        # 50 batches of two jobs over SSH: how many logins a run costs the login node.
        "ssh/deploy_logins_ssh.json": {
            "jobs": jobs([f"l{i:03d}" for i in range(2 * SSH_BATCHES)], "true"),
            "submission_groups": [group("g", 2)],
        },
        "cli/deploy_params.json": {
            "jobs": jobs(["a0", "a1", "a2", "b1"], "true"),
            "submission_groups": [group("g", 2)],
        },
        "cli/deploy_fanout.json": {
            "jobs": jobs([f"w{i:02d}" for i in range(FANOUT)], "sleep 600"),
            # 20 SLURM jobs and 20 deferred waits: what the shared poller is measured on
            "submission_groups": [group("g", 1, arrays=False)],
        },
        # 40 deferred waits over the celery profile's two triggerers (test_celery_ha.py)
        "cli/deploy_spread.json": {
            "jobs": jobs([f"s{i:02d}" for i in range(SPREAD)], "sleep 600"),
            "submission_groups": [group("g", 1, arrays=False)],
        },
        # Two batches of two jobs long enough to hit them with a fault mid-run.
        "cli/deploy_faults.json": {
            "jobs": jobs(["f0", "f1", "f2", "f3"], "echo start $JOBFORGE_JOB_NAME; sleep 25"),
            "submission_groups": [group("g", 2)],
        },
        # Two problems in one file: an unknown blocker and a cycle.
        "cli/deploy_broken.json": {
            "jobs": [
                {"name": "x", "command": "true", "blocked_by": ["nope"]},
                {"name": "y", "command": "true", "blocked_by": ["z"]},
                {"name": "z", "command": "true", "blocked_by": ["y"]},
            ],
        },
        "scheduled/deploy_hourly.json": {
            "jobs": jobs(["tick"], "date"),
            "submission_groups": [group("g", 1)],
        },
    }


def dag_ids() -> list[str]:
    return sorted("jobforge_" + Path(p).stem for p in configs())


def install(dags_folder: Path) -> Path:
    """Write configs, the package copy and the DAG files; returns the shared dir. Outputs of
    earlier sessions stay: every DAG run writes under its own run id."""
    for sub in ("out", "out-ssh"):
        (SHARED / sub).mkdir(parents=True, exist_ok=True)
    for rel, config in configs().items():
        path = SHARED / "configs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=1))
    shutil.copytree(
        REPO / "airflow_jobforge",
        SHARED / "pkg" / "airflow_jobforge",
        ignore=shutil.ignore_patterns("__pycache__"),
        dirs_exist_ok=True,
    )
    readable = [str(SHARED / "pkg"), str(SHARED / "configs")]
    subprocess.run(["chmod", "-R", "a+rX", *readable], check=True)
    subprocess.run(["chmod", "1777", str(SHARED), str(SHARED / "out-ssh")], check=True)
    dags_folder.mkdir(parents=True, exist_ok=True)
    (dags_folder / DAG_FILE).write_text(
        DAG_FILE_TEXT.format(
            shared=SHARED,
            python=sys.executable,
            ssh_conn_id=SSH_CONN_ID,
            slow_submit=SLOW_SUBMIT,
            slow_result=SLOW_RESULT,
        )
    )
    (dags_folder / ERRORS_FILE).write_text(ERRORS_FILE_TEXT.format(shared=SHARED))
    return SHARED


def ssh_connection(slurm_env: dict[str, str]) -> dict[str, Any]:
    """The Airflow SSH connection to the loopback sshd, as the REST API takes it."""
    host_key = next(
        " ".join(line.split()[1:3])
        for line in Path(slurm_env["JOBFORGE_SSH_KNOWN_HOSTS"]).read_text().splitlines()
        if line.split()[1] == "ssh-ed25519"
    )
    return {
        "connection_id": SSH_CONN_ID,
        "conn_type": "ssh",
        "host": "127.0.0.1",
        "port": int(slurm_env["JOBFORGE_SSH_PORT"]),
        "login": slurm_env["JOBFORGE_SSH_USER"],
        "extra": json.dumps({"key_file": slurm_env["JOBFORGE_SSH_KEY"], "host_key": host_key}),
    }


@pytest.fixture(scope="session")
def workload(deployment: Any) -> Path:
    """The workload's DAGs parsed, unpaused (but the scheduled one) and the SSH connection
    in place, on a running cluster."""
    from tests.integration.conftest import start_cluster
    from tests.slurm_tools import cancel_jobs

    slurm_env = start_cluster()
    left = cancel_jobs()  # the test cluster is the tests': nothing may hold its CPUs
    if left:
        print(f"canceled {len(left)} SLURM jobs left in the queue: {', '.join(left)}")
    shared = install(deployment.dags_folder)
    deployment.request("DELETE", f"/api/v2/connections/{SSH_CONN_ID}", expect=(204, 404))
    deployment.post("/api/v2/connections", json=ssh_connection(slurm_env), expect=(201,))
    for dag_id in dag_ids():
        deployment.wait_dag(dag_id, timeout=180)
        if dag_id not in ("jobforge_deploy_hourly", BROKEN):
            deployment.unpause(dag_id)
    return shared
