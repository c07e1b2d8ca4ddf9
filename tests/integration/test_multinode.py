"""On the multi-node test cluster (scripts/slurm/start.sh --nodes 3: nodes jf-n1..jf-n3, each a
slurmd in its own network and UTS namespace, partition `multi`), through real Airflow
(dag.test, backend slurm): a run's batches land on different nodes; a two-node job runs
`srun` across its allocation; and a node that dies mid-run fails only its own batch, which is
resubmitted without that node while the other batches finish untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import shlex
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airflow_jobforge.rundir import collect_results, read_records
from airflow_jobforge.rundir.events import read_events

from .airflow_helpers import run
from .conftest import (
    REPO,
    SSH_CONN_ID,
    STATE_DIR,
    MultiNode,
    shared_dir,
    start_cluster,
    wait_idle,
    write_config,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


# --- jobs that wait for each other, not for a guessed number of seconds -----------------------
def meeting_point(parent: Path) -> Path:
    """A directory on the shared file system where jobs on any node (any user) meet."""
    point = parent / "meet"
    (point / "arrived").mkdir(parents=True)
    for path in (point, point / "arrived"):
        path.chmod(0o1777)
    return point


def arrived(point: Path) -> int:
    return len(list((point / "arrived").iterdir()))


def job_waiting_for(point: Path, condition: str, timeout_s: int) -> str:
    """A job's command: it marks its arrival, waits until the shell `condition` holds (and
    gives up with exit code 99 after `timeout_s`: the test fails, it does not hang), then
    prints its host's name."""
    arrival = shlex.quote(str(point / "arrived")) + '/"$JOBFORGE_JOB_NAME"'
    return (
        f"touch {arrival}; i=0; until {condition}; do i=$((i + 1)); "
        f'[ "$i" -lt {timeout_s * 10} ] || exit 99; sleep 0.1; done; hostname'
    )


def all_arrived(point: Path, count: int) -> str:
    return f'[ "$(ls {shlex.quote(str(point / "arrived"))} | wc -l)" -ge {count} ]'


def released(point: Path) -> str:
    return f"[ -e {shlex.quote(str(point / 'release'))} ]"


def test_batches_of_one_run_land_on_different_nodes_and_all_succeed(cluster, multinode, tmp_path):
    # Three batches of two jobs, each batch owning a whole node while they overlap: every job
    # waits until all six run at once (so no batch can end and free its node for another).
    out = shared_dir(cluster)
    point = meeting_point(out)
    command = job_waiting_for(point, all_arrived(point, 6), timeout_s=120)
    jobs = [
        {"name": f"spread{i}", "command": command, "submission_group": "spread"} for i in range(6)
    ]
    group = {
        "name": "spread",
        "slurm": {"partition": multinode.partition, "walltime": "5", "extra": ["--exclusive"]},
        "batching": {"per_node_batch_size": 2, "num_processes": 2},
    }

    state, summary, run_dir = run(
        str(write_config(tmp_path, jobs, group)), backend="slurm", output=str(out)
    )

    assert state == "success"
    assert str(summary) == "6 jobs: 6 successful, 0 failed, 0 canceled, 0 missing"
    records = collect_results(run_dir)
    hosts = {name: r.host for name, r in records.items()}
    assert set(hosts.values()) == set(multinode.nodes), hosts
    for batch in ("spread-0000", "spread-0001", "spread-0002"):
        on = {r.host for r in records.values() if r.batch == batch}
        assert len(on) == 1, f"a batch runs on one node: {batch} on {on}"
    # What the job printed is the node's own name: each node is a host of its own.
    for name, record in records.items():
        printed = (run_dir / "job-output" / f"{name}.out").read_text().strip()
        assert printed == record.host


def test_a_two_node_job_runs_srun_across_both_nodes_and_sees_their_names(
    cluster, multinode, tmp_path
):
    jobs = [
        {
            "name": "pair",
            "command": 'echo "names=$JOBFORGE_NODE_NAMES"; srun hostname',
            "submission_group": "two",
        }
    ]
    group = {
        "name": "two",
        "slurm": {"partition": multinode.partition, "walltime": "5", "nodes": 2},
    }
    out = shared_dir(cluster)

    state, summary, run_dir = run(
        str(write_config(tmp_path, jobs, group)), backend="slurm", output=str(out)
    )

    assert state == "success", summary
    lines = (run_dir / "job-output" / "pair.out").read_text().split()
    names = next(line for line in lines if line.startswith("names=")).removeprefix("names=")
    srun_hosts = sorted(line for line in lines if not line.startswith("names="))
    assert len(srun_hosts) == 2 and len(set(srun_hosts)) == 2, lines
    assert set(srun_hosts) <= set(multinode.nodes)
    assert names.split(",") == srun_hosts
    assert collect_results(run_dir)["pair"].host in srun_hosts


# --- a node dies -------------------------------------------------------------------------------
@contextlib.contextmanager
def start_lock() -> Iterator[None]:
    """scripts/slurm/start.sh's own lock: while held, no test session's start.sh revives the
    node this test killed before SLURM has noticed its death."""
    with open(STATE_DIR / "start.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def multi_jobs(partition: str, marker: str) -> dict[str, tuple[str, str, str]]:
    """Our queued/running jobs on the partition whose name holds `marker`: id -> (name,
    state, nodes)."""
    out = subprocess.run(
        ["squeue", "-h", "-p", partition, "-o", "%i|%j|%T|%N"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        job_id, name, state, nodes = line.strip().split("|")
        if marker in name:
            jobs[job_id] = (name, state, nodes)
    return jobs


def sacct(job_id: str, field: str) -> str:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", field],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return out[0] if out else ""


def kill_node(node: str) -> None:
    """The node dies: its slurmd, slurmstepds and jobs, all at once (SIGKILL)."""
    pids = subprocess.run(
        ["ip", "netns", "pids", node], capture_output=True, text=True, check=True
    ).stdout.split()
    assert pids, f"node {node} has no processes to kill"
    subprocess.run(["kill", "-9", *pids], check=False)


@dataclass
class NodeDeath:
    """What the killer thread saw; `error` is re-raised in the test."""

    node: str = ""
    job_id: str = ""
    batch: str = ""
    killed_at: float = 0.0
    failed_after_s: float = 0.0
    error: BaseException | None = None
    others: dict[str, str] = field(default_factory=dict)


def kill_a_node_when_all_run(
    multinode: MultiNode, seen: NodeDeath, batches: int, point: Path
) -> None:
    """Once every batch runs on its own node: kill the node of the batch on the first node
    (where SLURM would put a resubmission first), wait for SLURM to end that batch's job
    NODE_FAIL, then bring the node back, so that only the exclusion keeps the retry away.
    The jobs wait at `point` until then: the batch on the killed node cannot have ended
    before its node died, however slow the machine, and the other batches hold their nodes
    until the dead one is back."""
    try:
        deadline = time.monotonic() + 120
        while True:
            jobs = multi_jobs(multinode.partition, ".death-")
            running = {i: j for i, j in jobs.items() if j[1] == "RUNNING"}
            if len(running) == batches:
                break
            assert time.monotonic() < deadline, f"batches never all ran: {jobs}"
            time.sleep(0.5)
        by_node = {nodes: (job_id, name) for job_id, (name, _, nodes) in running.items()}
        assert len(by_node) == batches, f"batches share nodes: {running}"
        seen.node = multinode.nodes[0]
        seen.job_id, name = by_node[seen.node]
        seen.batch = name.split(".")[1]
        seen.others = {i: n for i, (_, _, n) in running.items() if i != seen.job_id}
        deadline = time.monotonic() + 60
        while arrived(point) < 2 * batches:  # the jobs have started on their nodes
            assert time.monotonic() < deadline, f"jobs never all started: {arrived(point)}"
            time.sleep(0.2)
        with start_lock():
            kill_node(seen.node)
            seen.killed_at = time.monotonic()
            deadline = seen.killed_at + 150
            while sacct(seen.job_id, "State") != "NODE_FAIL":
                assert time.monotonic() < deadline, f"no NODE_FAIL: {sacct(seen.job_id, 'State')}"
                time.sleep(1)
            seen.failed_after_s = time.monotonic() - seen.killed_at
        start_cluster()  # restarts the dead node's slurmd (and nothing healthy)
    except BaseException as exc:  # re-raised in the test's thread
        seen.error = exc
    finally:
        (point / "release").touch()  # whatever happened: the jobs end now, none hangs


def test_a_dead_node_fails_only_its_batch_which_is_resubmitted_elsewhere(
    cluster, multinode, tmp_path
):
    out = shared_dir(cluster)
    point = meeting_point(out)
    # Within the 5-minute walltime: NODE_FAIL takes up to 150 s after the kill.
    command = job_waiting_for(point, released(point), timeout_s=270)
    jobs = [
        {"name": f"death{i}", "command": command, "submission_group": "death"} for i in range(6)
    ]
    group = {
        "name": "death",
        "slurm": {"partition": multinode.partition, "walltime": "5", "extra": ["--exclusive"]},
        "batching": {"per_node_batch_size": 2, "num_processes": 2},
    }
    seen = NodeDeath()
    killer = threading.Thread(target=kill_a_node_when_all_run, args=(multinode, seen, 3, point))
    killer.start()
    try:
        # Submitted over SSH as the cluster's user, as a deployment submits (and out of reach
        # of a concurrent test session's `scancel -u root`).
        state, summary, run_dir = run(
            str(write_config(tmp_path, jobs, group)),
            backend="slurm",
            output=str(out),
            ssh_conn_id=SSH_CONN_ID,
            python="/usr/bin/python3",
            pythonpath=str(cluster.shared / "pkg"),
        )
    finally:
        killer.join(timeout=300)
        subprocess.run([str(REPO / "scripts" / "slurm" / "start.sh")], capture_output=True)
    if seen.error is not None:
        raise seen.error
    print(f"{seen.node} killed: job {seen.job_id} NODE_FAIL {seen.failed_after_s:.0f}s later")

    assert sacct(seen.job_id, "State") == "NODE_FAIL"
    assert state == "success"
    assert str(summary) == "6 jobs: 6 successful, 0 failed, 0 canceled, 0 missing"

    # The dead node's batch came back once, as a new SLURM job told to avoid that node,
    # and ran elsewhere although the node was back.
    events = read_events(run_dir)
    again = [e for e in events if e.type == "batch_resubmitted"]
    assert [(e.batch, e.data["previous_job_id"]) for e in again] == [(seen.batch, seen.job_id)]
    assert again[0].data["state"] == "NODE_FAIL"
    assert again[0].data["excluded_nodes"] == [seen.node]
    assert sacct(again[0].hpc_job_id, "State") == "COMPLETED"
    assert sacct(again[0].hpc_job_id, "NodeList") != seen.node

    # Every job has exactly one record, from the SLURM job that ran it to the end: the other
    # batches' first and only jobs, the dead node's batch's resubmission.
    for batch in ("death-0000", "death-0001", "death-0002"):
        records = list(read_records(run_dir / "results" / f"{batch}.jsonl"))
        assert Counter(r.name for r in records) == {r.name: 1 for r in records}
        assert len(records) == 2 and all(r.succeeded for r in records)
        ids = {r.hpc_job_id for r in records}
        if batch == seen.batch:
            assert ids == {again[0].hpc_job_id}
            assert {r.host for r in records} != {seen.node}
        else:
            assert len(ids) == 1 and ids <= set(seen.others)
            submitted = [e for e in events if e.type == "batch_submitted" and e.batch == batch]
            assert len(submitted) == 1
    assert not (run_dir / "results" / f"{seen.batch}.completed.jsonl").exists()
    wait_idle(multinode.nodes)
