"""SlurmHook: which cluster, and how to reach it (local CLI, SSH, or the local backend).

Connection type `slurm`. Its extras: `ssh_conn_id` (reach the cluster through that SSH
connection; empty = the SLURM CLI on the worker), `partition`, `account` (defaults for groups
that set none), `python` (interpreter on the nodes, default python3), `pythonpath`,
`submit_rate_limit` (sbatch calls per second on this cluster, see `slurm.limits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from airflow.sdk import BaseHook

from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.slurm.limits import SubmissionGate, check_rate
from airflow_jobforge.slurm.protocol import AsyncBatchClient, BatchClient
from airflow_jobforge.slurm.transport import CommandResult, LocalTransport

Backend = Literal["local", "slurm"]


@dataclass(frozen=True)
class ClusterSettings:
    """Everything tasks and triggers need to reach a cluster; plain data, serializable.

    Built at DAG parse time without touching Airflow connections; `resolved()` fills in the
    `slurm` connection's extras at run time (explicit values win)."""

    backend: Backend = "slurm"
    slurm_conn_id: str | None = None
    ssh_conn_id: str | None = None
    partition: str | None = None
    account: str | None = None
    python: str | None = None
    pythonpath: str | None = None
    submit_rate_limit: float | None = None
    resolved_: bool = False

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return (self.backend, self.slurm_conn_id, self.ssh_conn_id)

    def resolved(self) -> ClusterSettings:
        if self.resolved_:
            return self
        extra: dict[str, Any] = {}
        if self.slurm_conn_id:
            extra = BaseHook.get_connection(self.slurm_conn_id).extra_dejson
        return ClusterSettings(
            backend=self.backend,
            slurm_conn_id=self.slurm_conn_id,
            ssh_conn_id=self.ssh_conn_id or extra.get("ssh_conn_id") or None,
            partition=self.partition or extra.get("partition") or None,
            account=self.account or extra.get("account") or None,
            python=self.python or extra.get("python") or "python3",
            pythonpath=self.pythonpath or extra.get("pythonpath") or None,
            submit_rate_limit=check_rate(
                self.submit_rate_limit or extra.get("submit_rate_limit") or None
            ),
            resolved_=True,
        )

    def gate(self) -> SubmissionGate:
        """The submission limits of this cluster, shared by every task on this host."""
        return SubmissionGate(self.key, self.submit_rate_limit)


class SlurmHook(BaseHook):
    """Reach a SLURM cluster (or the local backend) with the settings of a `slurm` connection.

    Explicit arguments win over the connection's extras, so one connection can serve DAGs
    that differ only in, say, the Python on the nodes.

    :param slurm_conn_id: Airflow connection of type `slurm` whose extras give defaults
        (`ssh_conn_id`, `partition`, `account`, `python`, `pythonpath`); None: no connection
    :param backend: `slurm` (sbatch) or `local` (batches run as processes on this machine)
    :param ssh_conn_id: Airflow SSH connection to the login node; None: the SLURM CLI here
    :param python: interpreter on the compute nodes that imports airflow_jobforge
        (default `python3`)
    :param pythonpath: PYTHONPATH on the compute nodes, e.g. a copy of the package
    """

    conn_name_attr = "slurm_conn_id"
    default_conn_name = "slurm_default"
    conn_type = "slurm"
    hook_name = "SLURM (jobforge)"

    def __init__(
        self,
        slurm_conn_id: str | None = None,
        *,
        backend: Backend = "slurm",
        ssh_conn_id: str | None = None,
        python: str | None = None,
        pythonpath: str | None = None,
    ) -> None:
        super().__init__()
        if backend not in ("local", "slurm"):
            raise JobForgeError(f"unknown backend {backend!r}: use 'local' or 'slurm'")
        self.settings = ClusterSettings(
            backend=backend,
            slurm_conn_id=slurm_conn_id,
            ssh_conn_id=ssh_conn_id,
            python=python,
            pythonpath=pythonpath,
        ).resolved()

    @classmethod
    def from_settings(cls, settings: ClusterSettings) -> SlurmHook:
        hook = cls.__new__(cls)
        BaseHook.__init__(hook)
        hook.settings = settings.resolved()
        return hook

    def get_client(self) -> BatchClient:
        """SlurmClient (local CLI or SSH) or LocalClient, all with the same interface.

        The implementations are imported on demand: a task on the local backend does not
        load the SSH provider, nor a SLURM task the local backend."""
        if self.settings.backend == "local":
            from airflow_jobforge.local.backend import LocalClient

            return LocalClient()
        from airflow_jobforge.slurm.client import SlurmClient

        if self.settings.ssh_conn_id:
            from airflow_jobforge.hooks.ssh_transport import SSHTransport

            return SlurmClient(SSHTransport(self.settings.ssh_conn_id))
        from airflow_jobforge.slurm.transport import LocalTransport

        return SlurmClient(LocalTransport())

    def get_async_client(self) -> AsyncBatchClient:
        if self.settings.backend == "local":
            from airflow_jobforge.local.backend import AsyncLocalClient

            return AsyncLocalClient()
        from airflow_jobforge.slurm.client import AsyncSlurmClient

        if self.settings.ssh_conn_id:
            from airflow_jobforge.hooks.ssh_transport import AsyncSSHTransport

            return AsyncSlurmClient(AsyncSSHTransport(self.settings.ssh_conn_id))
        from airflow_jobforge.slurm.transport import AsyncLocalTransport

        return AsyncSlurmClient(AsyncLocalTransport())

    def run_command(self, command: str) -> tuple[int, str, str]:
        """Run a config's setup/teardown command where jobs are submitted (worker/login node)."""
        result = self.run_argv(["bash", "-c", command])
        return result.returncode, result.stdout, result.stderr

    def run_argv(self, argv: list[str], timeout: float = 24 * 3600) -> CommandResult:
        """Run `argv` where jobs are submitted: the worker, or the login node over SSH (the
        transport quotes every argument)."""
        if self.settings.backend == "slurm" and self.settings.ssh_conn_id:
            from airflow_jobforge.hooks.ssh_transport import SSHTransport

            transport: Any = SSHTransport(self.settings.ssh_conn_id)
        else:
            transport = LocalTransport()
        try:
            return transport.run(argv, timeout=timeout)
        finally:
            transport.close()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "login", "password", "host"],
            "relabeling": {},
            "placeholders": {
                "extra": '{"ssh_conn_id": "hpc_login", "partition": "short", '
                '"account": "myproject", "python": "/opt/venvs/jobforge/bin/python"}'
            },
        }
