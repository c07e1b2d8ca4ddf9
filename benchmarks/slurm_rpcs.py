"""Controller RPCs our client costs, counted by sdiag (noise-free). Needs root and the cluster
of scripts/slurm/start.sh.

Prints: RPCs to submit 200 single-job batches (with and without the adoption lookup),
RPCs for 10 status polls of those 200 jobs (goal: 10 REQUEST_JOB_INFO), and the submit RPCs
(REQUEST_SUBMIT_BATCH_JOB) of a config of 1,000 one-job batches as its DAG's submit tasks
issue them, with job arrays and without (goal: <= 10 with them, against 1,000).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid

from airflow_jobforge.config import SlurmParams, parse_configuration
from airflow_jobforge.dag.render import render_config
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.slurm.client import SlurmClient
from airflow_jobforge.slurm.script import SubmitRequest
from airflow_jobforge.slurm.transport import LocalTransport


def sdiag() -> dict[str, int]:
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    section = out.split("Remote Procedure Call statistics by message type", 1)[1]
    section = section.split("Remote Procedure Call statistics by user", 1)[0]
    counts = {}
    for line in section.splitlines():
        parts = line.split()
        for part in parts:
            if part.startswith("count:"):
                counts[parts[0]] = int(part[6:])
    counts.pop("REQUEST_STATS_INFO", None)
    return counts


def reset() -> None:
    subprocess.run(["sdiag", "-r"], check=True, capture_output=True)


def submit_all(client: SlurmClient, out: str, adopt: bool) -> list[str]:
    held = SlurmParams(walltime="5", extra=("--hold",))
    ids = []
    for _ in range(200):
        request = SubmitRequest(
            tag=f"bench-{uuid.uuid4().hex[:12]}",
            batch=BatchSpec("b-0000", (JobSpec("a", "true"),)),
            slurm=held,
            output_dir=out,
            python=sys.executable,
        )
        ids.append(client.submit(request, adopt=adopt).job_id)
    return ids


def main() -> None:
    client = SlurmClient(LocalTransport())
    with tempfile.TemporaryDirectory() as out:
        for adopt in (False, True):
            reset()
            started = time.perf_counter()
            ids = submit_all(client, out, adopt)
            took = time.perf_counter() - started
            counts = sdiag()
            print(
                f"submit 200 single jobs (adoption lookup {'on' if adopt else 'off'}): "
                f"{sum(counts.values())} RPCs {counts} in {took:.1f} s"
            )
            client.cancel(ids)
        ids = submit_all(client, out, adopt=False)
        reset()
        for _ in range(10):
            client.status(ids)
        counts = sdiag()
        print(
            f"status of 200 jobs x 10 polls: REQUEST_JOB_INFO={counts.get('REQUEST_JOB_INFO')}"
            f" (goal 10); all RPCs {counts}"
        )
        client.cancel(ids)
        for arrays in (False, True):
            one_job_batches(client, out, arrays)


def one_job_batches(client: SlurmClient, out: str, arrays: bool, n: int = 1000) -> None:
    """What the submit tasks of a 1,000 one-job-batch config cost the controller: the config
    rendered as the factory renders it, each batch submitted as its submit task does (held
    in the queue, so that nothing runs), then one status poll of them all."""
    config = parse_configuration(
        {
            "jobs": [{"name": f"j{i:04d}", "command": "true"} for i in range(n)],
            "submission_groups": [
                {"name": "g", "batching": {"per_node_batch_size": 1, "job_arrays": arrays}}
            ],
        }
    )
    batches = render_config(config, job_tasks=False).batches
    reset()
    started = time.perf_counter()
    ids = []
    for batch in batches:
        request = SubmitRequest(
            tag=f"bench-{uuid.uuid4().hex[:12]}",
            batch=BatchSpec.from_dict(batch.spec),
            slurm=SlurmParams(walltime="5", extra=("--hold",)),
            output_dir=out,
            python=sys.executable,
            array=batch.array,
        )
        ids.append(client.submit(request, adopt=False).job_id)
    took = time.perf_counter() - started
    submits = sdiag().get("REQUEST_SUBMIT_BATCH_JOB", 0)
    reset()
    client.status(ids)
    polls = sum(n for rpc, n in sdiag().items() if rpc.startswith("REQUEST_JOB_INFO"))
    print(
        f"{n} one-job batches, job arrays {'on ' if arrays else 'off'}: {len(batches)} submit "
        f"tasks, REQUEST_SUBMIT_BATCH_JOB={submits} (goal <= 10 with arrays) in {took:.1f} s; "
        f"one status poll of them all: REQUEST_JOB_INFO(_SINGLE)={polls}"
    )
    client.cancel(ids)


if __name__ == "__main__":
    main()
