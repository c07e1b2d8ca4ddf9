"""The real cluster (scripts/slurm/start.sh), the loopback sshd, and helpers.

Under CI=true a cluster that cannot be started fails the run; elsewhere the tests skip with
the reason (they need root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_jobforge.config import SlurmParams
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.slurm.client import SlurmClient, SubmittedJob
from airflow_jobforge.slurm.script import SubmitRequest
from airflow_jobforge.slurm.states import JobStatus
from airflow_jobforge.slurm.transport import LocalTransport
from tests.slurm_tools import sdiag_counts, sdiag_reset  # noqa: F401  (used by the tests)

REPO = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("JOBFORGE_SLURM_STATE", "/var/lib/jobforge-slurm"))
SSH_CONN_ID = "jobforge_it_ssh"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "runs_last: runs after every other test of the session (it restarts the cluster's "
        "daemons: tests/integration/conftest.py)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `runs_last` run after all others, in their own order, whatever their file
    is called: they restart the cluster's daemons (without accounting, and the controller
    cold, so that it forgets every job it knew). Their fixture brings accounting back, but no
    test should have to run amid, or rely on what the controller knew before, such a restart."""
    last = [item for item in items if item.get_closest_marker("runs_last")]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker("runs_last")] + last


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the SLURM cluster is required under CI=true: {reason}")
    pytest.skip(reason)


def start_cluster(*args: str) -> dict[str, str]:
    result = subprocess.run(
        [str(REPO / "scripts" / "slurm" / "start.sh"), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/slurm/start.sh failed:\n{result.stderr[-3000:]}")
    env = {}
    for line in (STATE_DIR / "env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return env


@dataclass
class Cluster:
    host: str
    env: dict[str, str]
    shared: Path  # world-writable dir for outputs and a copy of the package for the SSH user


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        unavailable("integration tests need root: they start the SLURM cluster")
    env = start_cluster()
    shared = Path(tempfile.mkdtemp(prefix="jobforge-it-", dir="/tmp"))
    shared.chmod(0o1777)
    # The SSH test user cannot read a checkout under /root: give it its own copy of the
    # package (the node runner needs only the standard library).
    shutil.copytree(
        REPO / "airflow_jobforge",
        shared / "pkg" / "airflow_jobforge",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    subprocess.run(["chmod", "-R", "a+rX", str(shared / "pkg")], check=True)
    host_key = next(
        " ".join(line.split()[1:3])
        for line in Path(env["JOBFORGE_SSH_KNOWN_HOSTS"]).read_text().splitlines()
        if line.split()[1] == "ssh-ed25519"
    )
    os.environ[f"AIRFLOW_CONN_{SSH_CONN_ID.upper()}"] = json.dumps(
        {
            "conn_type": "ssh",
            "host": "127.0.0.1",
            "port": int(env["JOBFORGE_SSH_PORT"]),
            "login": env["JOBFORGE_SSH_USER"],
            "extra": {"key_file": env["JOBFORGE_SSH_KEY"], "host_key": host_key},
        }
    )
    yield Cluster(host=env["JOBFORGE_SLURM_HOST"], env=env, shared=shared)
    subprocess.run(["scancel", "-u", "root"], check=False)
    shutil.rmtree(shared, ignore_errors=True)


@dataclass
class Target:
    """One way of reaching the cluster: the client plus how the node runner is started."""

    name: str
    client: SlurmClient
    python: str
    pythonpath: str | None
    shared: Path

    def output_dir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.shared))
        path.chmod(0o777)
        return path

    def submit(
        self,
        jobs: list[JobSpec],
        *,
        tag: str | None = None,
        output_dir: Path | None = None,
        slurm: SlurmParams | None = None,
        adopt: bool = True,
    ) -> SubmittedJob:
        request = SubmitRequest(
            tag=tag or f"it-{uuid.uuid4().hex[:12]}",
            batch=BatchSpec("g-0000", tuple(jobs), num_processes=2),
            slurm=slurm or SlurmParams(walltime="5"),
            output_dir=str(output_dir or self.output_dir()),
            python=self.python,
            pythonpath=self.pythonpath,
        )
        return self.client.submit(request, adopt=adopt)

    def submit_held(self, n: int) -> list[SubmittedJob]:
        """n one-job batches held in the queue (--hold): cheap jobs to poll for status."""
        out = self.output_dir()
        held = SlurmParams(walltime="5", extra=("--hold",))
        return [
            self.submit([JobSpec("a", "true")], output_dir=out, slurm=held, adopt=False)
            for _ in range(n)
        ]


def make_target(name: str, cluster: Cluster) -> Target:
    if name == "local":
        return Target(name, SlurmClient(LocalTransport()), sys.executable, None, cluster.shared)
    from airflow_jobforge.hooks.ssh_transport import SSHTransport

    return Target(
        name,
        SlurmClient(SSHTransport(SSH_CONN_ID)),
        "/usr/bin/python3",
        str(cluster.shared / "pkg"),
        cluster.shared,
    )


@pytest.fixture(params=["local", "ssh"])
def target(request, cluster) -> Iterator[Target]:
    t = make_target(request.param, cluster)
    yield t
    t.client.close()


@pytest.fixture
def local(cluster) -> Iterator[Target]:
    t = make_target("local", cluster)
    yield t
    t.client.close()


def wait_for_status(
    client: SlurmClient, job: SubmittedJob, predicate, timeout: float = 60
) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = client.status([job.job_id], {job.job_id: job.exit_file})[job.job_id]
        if predicate(status):
            return status
        assert time.monotonic() < deadline, f"job {job.job_id} stuck in {status}"
        time.sleep(0.3)


def wait_terminal(client: SlurmClient, job: SubmittedJob, timeout: float = 60) -> JobStatus:
    return wait_for_status(client, job, lambda s: s.terminal, timeout)


def wait_running(client: SlurmClient, job: SubmittedJob, timeout: float = 60) -> JobStatus:
    return wait_for_status(client, job, lambda s: s.state == "RUNNING", timeout)


def wait_file(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@contextlib.contextmanager
def node_down(host: str) -> Iterator[None]:
    """The node fails (running jobs end NODE_FAIL); afterwards it is back and idle."""
    subprocess.run(
        ["scontrol", "update", f"nodename={host}", "state=down", "reason=jobforge-test"], check=True
    )
    try:
        yield
    finally:
        subprocess.run(
            ["scontrol", "update", f"nodename={host}", "state=resume"],
            check=False,
            capture_output=True,
        )  # ReturnToService=2 may have done it
        deadline = time.monotonic() + 60
        while True:
            out = subprocess.run(
                ["sinfo", "-h", "-N", "-n", host, "-o", "%t"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            states = set(out.split())  # one line per partition
            if states and states <= {"idle", "mix", "alloc"}:
                break
            assert time.monotonic() < deadline, f"node stays {states}"
            time.sleep(0.5)


# --- the multi-node cluster (start.sh --nodes 3) ------------------------------------------
@dataclass(frozen=True)
class MultiNode:
    partition: str
    nodes: tuple[str, ...]


def node_states(nodes: tuple[str, ...]) -> dict[str, str]:
    out = subprocess.run(
        ["sinfo", "-h", "-N", "-n", ",".join(nodes), "-o", "%N %t"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def wait_idle(nodes: tuple[str, ...], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while set(node_states(nodes).values()) != {"idle"}:
        assert time.monotonic() < deadline, f"nodes not idle: {node_states(nodes)}"
        time.sleep(0.5)


@pytest.fixture
def multinode(cluster) -> MultiNode:
    partition = cluster.env.get("JOBFORGE_SLURM_MULTI_PARTITION", "")
    nodes = tuple(n for n in cluster.env.get("JOBFORGE_SLURM_MULTI_NODES", "").split(",") if n)
    if not partition or len(nodes) < 3:
        unavailable(
            "the multi-node tests need three namespace nodes: scripts/slurm/start.sh --nodes 3 "
            "(make cluster starts them)"
        )
    wait_idle(nodes)  # a test before may still be ending its jobs
    return MultiNode(partition, nodes)


def write_config(directory: Path, jobs: list[dict], group: dict) -> Path:
    path = directory / f"{group['name']}.json"
    path.write_text(json.dumps({"jobs": jobs, "submission_groups": [group]}))
    return path


def shared_dir(cluster) -> Path:
    path = Path(
        subprocess.check_output(["mktemp", "-d", "-p", str(cluster.shared)], text=True).strip()
    )
    path.chmod(0o1777)
    return path
