"""The real Airflow deployment (scripts/airflow/start.sh): PostgreSQL, api-server, scheduler
(LocalExecutor), dag-processor and triggerer as separate processes, driven through the REST API.

The `deployment` fixture starts it (idempotent: a running deployment costs ~0.5 s) and leaves it
running after the session; stop it with scripts/airflow/stop.sh. Needs root: elsewhere the tests
skip, but under CI=true they fail with the start script's error.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployment.rest import AirflowClient

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "airflow"
STATE_DIR = Path(os.environ.get("JOBFORGE_AIRFLOW_STATE", "/var/lib/jobforge-airflow"))
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# start.sh --executor celery: Redis, two schedulers, two triggerers, two Celery workers.
CELERY_COMPONENTS = (
    "redis", "api-server", "scheduler", "scheduler-2", "dag-processor", "triggerer",
    "triggerer-2", "worker-1", "worker-2",
)


def _script_env() -> dict[str, str]:
    """The scripts' environment without the test session's AIRFLOW_* (tests/conftest.py points
    AIRFLOW_HOME at a temporary directory: that must not reach the deployment)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}


def run_script(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPTS / script), *args],
        env=_script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(result.args)} failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    return result


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key] = value
    return env


class Component:
    """One Airflow component of the deployment, for fault tests: stop (any signal, the whole
    session or the main process alone) and start it again through the scripts."""

    def __init__(self, name: str, state_dir: Path):
        if name not in CELERY_COMPONENTS:  # the local profile's included
            raise ValueError(f"{name!r} is none of {CELERY_COMPONENTS}")
        self.name = name
        self.pid_file = state_dir / "run" / f"{name}.pid"
        self.log_file = state_dir / "logs" / f"{name}.log"

    @property
    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        # Celery retitles a worker "[celeryd: worker-1@host:MainProcess] ..."
        return stat.split()[2] != "Z" and any(w in cmd for w in ("airflow", "celery", "redis"))

    def stop(
        self, signal: str = "TERM", leader_only: bool = False, grace: float | None = None
    ) -> None:
        """`signal` to the component's whole session (workers, log server), SIGKILL after
        `grace` seconds (default 20 after TERM, 5 after KILL; a scheduler running a task
        needs all of it); with `leader_only`, to its main process alone: a crash, whose
        orphans the next start() cleans up."""
        args = ["--only", self.name, "--signal", signal]
        if leader_only:
            args.append("--leader-only")
        if grace is not None:
            args += ["--grace", str(int(grace))]
        _checked(run_script("stop.sh", *args, timeout=120))

    def crash(self) -> None:
        """kill -9 of the main process only, as a machine or OOM kill leaves it."""
        self.stop("KILL", leader_only=True)

    def start(self, *wait_args: str) -> None:
        """Start it (a no-op while it runs) and wait until it is healthy; in the profile
        the deployment runs (start.sh --only keeps it)."""
        _checked(run_script("start.sh", "--only", self.name, "--no-wait-dags", *wait_args))

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Deployment(AirflowClient):
    """The REST client of the running deployment, plus its env file, DAGs folder and
    components."""

    def __init__(self, env: dict[str, str]):
        super().__init__(env["JOBFORGE_AIRFLOW_URL"])
        self.env = env
        self.state_dir = Path(env["JOBFORGE_AIRFLOW_STATE"])
        self.dags_folder = Path(env["JOBFORGE_AIRFLOW_DAGS_FOLDER"])

    def component(self, name: str) -> Component:
        return Component(name, self.state_dir)

    def write_dag(self, filename: str, source: str) -> Path:
        """Put a DAG file into the deployment's DAGs folder atomically (the dag-processor
        never sees half a file); the dag-processor picks it up within ~5 s."""
        target = self.dags_folder / filename
        tmp = self.state_dir / f".{filename}.tmp"
        tmp.write_text(source)
        os.replace(tmp, target)
        return target

    def remove_dag(self, filename: str) -> None:
        (self.dags_folder / filename).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip(
            "deployment tests need root: scripts/airflow/start.sh starts PostgreSQL and Airflow"
        )
    # Under CI=true a non-root run gets here too, and fails with the script's own reason.
    result = run_script("start.sh")
    if result.returncode != 0:
        pytest.fail(
            f"scripts/airflow/start.sh failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    client = Deployment(read_env(STATE_DIR / "env"))
    yield client
    client.http.close()


from tests.deployment.workload import workload  # noqa: E402,F401  (the session fixture)
