"""What a user of `jobforge run` sees, run for real (embedded Airflow, local backend) with its
output going to a file: progress lines, the results table, the summary and where the logs
are; Airflow's tracebacks and warnings only in the task logs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

CONFIG = {
    "jobs": [
        {"name": "fine", "command": "echo fine"},
        {"name": "broken", "command": "echo 'it broke' >&2; exit 3"},
    ]
}


def test_a_failing_job_shows_in_the_table_and_its_traceback_only_in_the_task_log(tmp_path):
    config = tmp_path / "two.json"
    config.write_text(json.dumps(CONFIG))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["JOBFORGE_LOCAL_STATE"] = str(tmp_path / "state")
    result = subprocess.run(
        [sys.executable, "-m", "airflow_jobforge.cli.main", "run", str(config)]
        + ["--output", str(tmp_path / "out"), "--airflow-home", str(tmp_path / "airflow")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    everything = result.stdout + result.stderr
    for noise in ("Traceback", "[error", "[warning", "Warning:", "\r"):
        assert noise not in everything, everything

    table = result.stdout.splitlines()
    assert table[0].split() == ["job", "status", "rc", "time", "reason"]
    assert table[1].split()[:3] == ["fine", "ok", "0"]
    assert table[2].split()[:3] == ["broken", "failed", "3"]
    assert table[3].split() == ["|", "it", "broke"]
    assert "2 jobs: 1 successful, 1 failed, 0 canceled, 0 missing" in result.stdout

    progress = [line for line in result.stderr.splitlines() if line.startswith("jobs: ")]
    assert progress[-1] == "jobs: 2/2 done (1 ok, 1 failed, 0 canceled/missing)"
    assert len(progress) == len(set(progress)), "a line is printed only when it changes"

    logs = Path(re.search(r"task logs: (\S+)/$", result.stdout, re.M).group(1))
    assert logs.is_relative_to(tmp_path / "airflow" / "logs")
    failed_task = (logs / "task_id=default.job_broken" / "attempt=1.log").read_text()
    assert "Traceback" in failed_task and "job broken failed with return code 3" in failed_task
    assert (logs / "jobforge-run.log").exists()
