"""Configs run as DAGs by real Airflow (dag.test on its SQLite metadata DB), on the local
backend, on the real cluster through the SLURM CLI, and through SSH to the loopback sshd."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from airflow_jobforge.config import load_config
from airflow_jobforge.dag.factory import build_dag
from airflow_jobforge.dag.options import dag_id_for
from airflow_jobforge.rundir import collect_results, read_records

from .airflow_helpers import backend_options, clear_and_resume, run, task_states

pytestmark = [pytest.mark.slurm, pytest.mark.embedded]


def write_config(directory: Path, shared: Path) -> Path:
    """Three groups, cross-batch dependencies, a job failing on its first run only."""
    log = shared / "order.log"
    flag = shared / "sim1-ran-once"
    jobs = [
        ("prep", f"echo prep >> {log}", "a", [], False),
        ("a2", "true", "a", [], False),
        ("sim1", f"test -e {flag} || {{ touch {flag}; exit 3; }}", "b", ["prep"], False),
        ("sim2", f"echo sim2 >> {log}", "b", ["prep"], False),
        ("dep_cancel", "true", "c", ["sim1"], True),
        ("dep_run", f"echo dep_run >> {log}", "c", ["sim1"], False),
    ]
    config = {
        "jobs": [
            {
                "name": n,
                "command": c,
                "submission_group": g,
                "blocked_by": b,
                "cancel_on_blocking_job_failure": f,
            }
            for n, c, g, b, f in jobs
        ],
        "submission_groups": [
            {"name": "a", "slurm": {"walltime": "5"}, "batching": {"per_node_batch_size": 2}},
            {"name": "b", "slurm": {"walltime": "5"}, "batching": {"per_node_batch_size": 1}},
            {"name": "c", "slurm": {"walltime": "5"}, "batching": {"per_node_batch_size": 10}},
        ],
        "setup_command": f"echo setup > {log}",
        "teardown_command": f"echo teardown >> {log}",
        "job_post_process_config": {
            "module": "tests.integration.postproc_sample",
            "class": "WriteFile",
            "data": {"tag": "post"},
        },
    }
    path = directory / "three_groups.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("kind", ["local", "slurm", "ssh"])
def test_three_groups_with_a_failing_job_run_end_to_end(kind, cluster, tmp_path):
    shared = Path(
        subprocess.check_output(["mktemp", "-d", "-p", str(cluster.shared)], text=True).strip()
    )
    shared.chmod(0o1777)
    config_file = write_config(tmp_path, shared)
    out = shared / "out"
    state, summary, run_dir = run(
        str(config_file), output=str(out), **backend_options(kind, cluster)
    )
    assert state == "failed", "sim1 failed: the run must say so"
    assert str(summary) == "6 jobs: 4 successful, 1 failed, 1 canceled, 0 missing"
    records = collect_results(run_dir)
    assert records["sim1"].return_code == 3
    assert records["dep_cancel"].status == "canceled" and "sim1" in records["dep_cancel"].reason
    assert records["dep_run"].succeeded, "without the flag a dependant runs after a failure"
    if kind != "local":
        assert records["prep"].hpc_job_id, "ran under SLURM"
    posts = sorted(p.name for p in run_dir.glob("post-*.json"))
    assert posts == ["post-a2.json", "post-dep_run.json", "post-prep.json", "post-sim2.json"]
    order = (shared / "order.log").read_text().split()
    assert order[0] == "setup" and order[-1] == "teardown"
    assert order.index("prep") < order.index("sim2") and order.index("prep") < order.index(
        "dep_run"
    )

    states = task_states(dag_id_for(config_file))
    assert states["b.job_sim1"] == "failed"
    assert states["c.job_dep_cancel"] == "skipped"
    assert states["c.job_dep_run"] == "success"
    assert states["summary"] == "failed" and states["teardown"] == "success"

    if kind != "slurm":
        return
    # Clearing the failed job's task re-runs that job alone (it succeeds the second time).
    dag = build_dag(
        load_config(config_file),
        dag_id_for(config_file),
        output_dir=str(out),
        backend="slurm",
        python=__import__("sys").executable,
    )
    assert clear_and_resume(dag, ["b.job_sim1"]) in ("success", "failed")
    after = collect_results(run_dir)
    assert after["sim1"].succeeded and after["sim1"].hpc_job_id != records["sim1"].hpc_job_id
    # sim1 and sim2 were one job array; the cleared job reruns alone, as a one-task array
    rerun_files = list((run_dir / "results").glob("b-array0000-rerun2-*.jsonl"))
    assert len(rerun_files) == 1
    assert [r.name for r in read_records(rerun_files[0])] == ["sim1"], "only the cleared job"
    prep_lines = [
        r
        for p in (run_dir / "results").glob("*.jsonl")
        for r in read_records(p)
        if r.name == "prep"
    ]
    assert len(prep_lines) == 1, "nothing else ran again"
    assert task_states(dag_id_for(config_file))["b.job_sim1"] == "success"


def test_params_override_partition_and_select_jobs(cluster, tmp_path):
    config = {
        "jobs": [{"name": f"a{i}", "command": "true"} for i in range(3)]
        + [{"name": "b1", "command": "true"}],
        "submission_groups": [
            {"name": "g", "slurm": {"walltime": "5"}, "batching": {"per_node_batch_size": 2}}
        ],
    }
    path = tmp_path / "params.json"
    path.write_text(json.dumps(config))
    state, summary, run_dir = run(
        str(path),
        backend="slurm",
        output=str(cluster.shared / "p"),
        params={"partition": "other", "jobs": ["a*"]},
    )
    assert state == "success"
    assert str(summary) == "3 jobs: 3 successful, 0 failed, 0 canceled, 0 missing"
    records = collect_results(run_dir)
    assert set(records) == {"a0", "a1", "a2"}
    job_ids = {r.hpc_job_id for r in records.values()}
    partitions = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", ",".join(job_ids), "-o", "%P"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert set(partitions) == {"other"}
    assert task_states(dag_id_for(path))["g.job_b1"] == "skipped"
