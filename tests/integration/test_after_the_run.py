"""After the run, on the real cluster through real Airflow (dag.test): a batch killed for
memory comes back with more memory and succeeds, a job past its walltime is recorded
missing, every step is in the event log, and `rerun_of` runs only what did not succeed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from airflow_jobforge.dag.options import dag_id_for
from airflow_jobforge.rundir import collect_results, read_records
from airflow_jobforge.rundir.events import read_events
from airflow_jobforge.rundir.manifest import read_manifest

from .airflow_helpers import run, task_states

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.embedded]

HOG = (
    "python3 -c \"x = bytearray(300 * 1024 * 1024)\n"
    "for i in range(0, len(x), 4096): x[i] = 1\nimport time; time.sleep(1.5)\""
)


def write_config(directory: Path, flag: Path) -> Path:
    config = {
        "jobs": [
            {"name": "hog", "command": HOG, "submission_group": "mem"},
            {"name": "small", "command": "echo small", "submission_group": "mem"},
            {"name": "sleeper", "command": "sleep 300", "submission_group": "slow"},
            {
                "name": "flaky",
                "command": f"test -e {flag} || {{ touch {flag}; echo broken >&2; exit 3; }}",
                "submission_group": "fail",
            },
        ],
        "submission_groups": [
            {
                "name": "mem",
                "slurm": {"walltime": "5", "mem": "150M"},
                "batching": {"per_node_batch_size": 10, "num_processes": 1},
                "retry": {"out_of_memory": {"mem_factor": 4, "max_mem": "1G"}},
                "monitor": {"interval_s": 0.5},
            },
            {"name": "slow", "slurm": {"walltime": "1"}},
            {"name": "fail", "slurm": {"walltime": "5"}},
        ],
    }
    path = directory / "after.json"
    path.write_text(json.dumps(config))
    return path


def sacct_state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True
    ).stdout.split()
    return out[0] if out else ""


def test_oom_retried_with_more_memory_walltime_missing_and_rerun_of(cluster, tmp_path):
    shared = Path(
        subprocess.check_output(["mktemp", "-d", "-p", str(cluster.shared)], text=True).strip()
    )
    shared.chmod(0o1777)
    config_file = write_config(tmp_path, shared / "flaky-ran-once")
    out = shared / "out"

    state, summary, run_dir = run(str(config_file), backend="slurm", output=str(out))

    assert state == "failed"
    assert str(summary) == "4 jobs: 2 successful, 1 failed, 0 canceled, 1 missing"
    records = collect_results(run_dir)
    assert records["hog"].succeeded and records["small"].succeeded
    assert records["sleeper"].status == "missing" and "SIGTERM" in (records["sleeper"].reason or "")
    assert records["flaky"].return_code == 3
    assert records["hog"].max_rss_bytes and records["hog"].max_rss_bytes > 250 * 2**20

    # The first attempt was killed for memory; the retry ran with 4x the memory.
    first = [r for r in read_records(run_dir / "results" / "mem-0000.jsonl") if r.name == "hog"]
    assert len(first) == 2 and first[0].return_code == 137 and first[1].return_code == 0
    assert sacct_state(first[0].hpc_job_id) == "OUT_OF_MEMORY"
    assert sacct_state(first[1].hpc_job_id) == "COMPLETED"
    retry_ids = {r.hpc_job_id for r in read_records(run_dir / "results" / "mem-0000.jsonl")}
    assert len(retry_ids) == 2
    small = [r for r in read_records(run_dir / "results" / "mem-0000.jsonl") if r.name == "small"]
    assert len(small) == 1, "a job that succeeded is not run again"

    events = read_events(run_dir)
    kinds = [(e.type, e.batch) for e in events]
    assert ("retry_more_resources", "mem-0000") in kinds
    retry = next(e for e in events if e.type == "retry_more_resources")
    assert retry.data["state"] == "OUT_OF_MEMORY" and retry.data["change"] == "mem 150M -> 600M"
    assert retry.data["jobs"] == ["hog"]
    ended = {e.data["state"] for e in events if e.type == "batch_ended" and e.batch == "slow-0000"}
    assert ended == {"TIMEOUT"}
    assert ("batch_submitted", "fail-0000") in kinds and ("batch_started", "fail-0000") in kinds
    assert any(e.type == "job_failed" and e.job == "flaky" for e in events)

    # Monitor data for every job that ran: its rusage in the record, samples of the long one.
    ran = [r for r in records.values() if r.start]
    assert all(r.host and r.max_rss_bytes and r.cpu_time_s is not None for r in ran)
    samples = [
        json.loads(line)
        for line in (run_dir / "monitor" / "mem-0000.jsonl").read_text().splitlines()
    ]
    hog = [s for s in samples if s["kind"] == "job" and s["job"] == "hog"]
    assert hog and max(s["peak_rss_bytes"] for s in hog) > 250 * 2**20

    # The summary task left the report with its plots and what sacct said per batch.
    assert "plotly" in (run_dir / "report.html").read_text()
    assert first[0].hpc_job_id in (run_dir / "efficiency.json").read_text()

    manifest = read_manifest(run_dir)
    assert manifest is not None and set(manifest.jobs) == {"hog", "small", "sleeper", "flaky"}
    assert manifest.config_file == str(config_file)

    # A new run of the same DAG that reruns only the failed job of the first one.
    state2, summary2, run_dir2 = run(
        str(config_file),
        backend="slurm",
        output=str(out),
        params={"rerun_of": run_dir.name, "rerun": ["failed"]},
    )
    assert state2 == "success"
    assert str(summary2) == "1 jobs: 1 successful, 0 failed, 0 canceled, 0 missing"
    assert set(collect_results(run_dir2)) == {"flaky"}
    states = task_states(dag_id_for(config_file))
    assert states["fail.job_flaky"] == "success"
    assert states["mem.job_hog"] == "skipped" and states["slow.job_sleeper"] == "skipped"
