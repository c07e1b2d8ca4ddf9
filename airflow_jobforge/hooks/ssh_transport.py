"""SSH transports for the SLURM client, on apache-airflow-providers-ssh's hooks.

One SSH connection per transport, reused for every command (a poll loop must not open a
connection per query: sshd's MaxStartups and the login node's patience are finite). A lost
connection raises TransportError after dropping the connection; the client's driver retries
with bounded backoff, and the next command reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Sequence
from typing import Any

from airflow_jobforge.slurm.transport import DEFAULT_TIMEOUT_S, CommandResult, TransportError


class SSHTransport:
    def __init__(self, ssh_conn_id: str | None = None, hook: Any = None) -> None:
        if hook is None:
            from airflow.providers.ssh.hooks.ssh import SSHHook

            hook = SSHHook(ssh_conn_id=ssh_conn_id)
        self.hook = hook

    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        import paramiko

        command = shlex.join(argv)
        try:
            client = self.hook.get_conn()  # cached by the hook while its transport is active
            stdin, stdout, stderr = client.exec_command(
                command, timeout=timeout or DEFAULT_TIMEOUT_S
            )
            if input is not None:
                stdin.write(input)
            stdin.channel.shutdown_write()
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            status = stdout.channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise TransportError(
                f"SSH to {self.hook.remote_host}: {exc or type(exc).__name__}"
            ) from None
        return CommandResult(tuple(argv), status, out, err)

    def close(self) -> None:
        client = getattr(self.hook, "client", None)
        if client is not None:
            client.close()
            self.hook.client = None


MAX_CHANNELS = 8
"""Commands at once on one connection: sshd's MaxSessions (10 by default) refuses more
channels ("open failed"), and a refused channel must not cost a new login."""


class AsyncSSHTransport:
    """One connection for every command of a triggerer's poller and its triggers, at most
    MAX_CHANNELS commands at once on it."""

    def __init__(self, ssh_conn_id: str | None = None, hook: Any = None) -> None:
        if hook is None:
            from airflow.providers.ssh.hooks.ssh import SSHHookAsync

            hook = SSHHookAsync(ssh_conn_id=ssh_conn_id or "ssh_default")
        self.hook = hook
        self._conn: Any = None
        # asyncssh logs every channel at INFO: one poll would flood the triggerer log.
        if logging.getLogger("asyncssh").level == logging.NOTSET:
            logging.getLogger("asyncssh").setLevel(logging.WARNING)
        self._lock = asyncio.Lock()
        self._channels = asyncio.Semaphore(MAX_CHANNELS)

    async def _connection(self) -> Any:
        async with self._lock:
            if self._conn is None:
                self._conn = await self.hook.get_conn()
            return self._conn

    async def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        import asyncssh

        try:
            conn = await self._connection()
            async with self._channels:
                result = await conn.run(
                    shlex.join(argv),
                    input=input,
                    check=False,
                    timeout=timeout or DEFAULT_TIMEOUT_S,
                )
        except asyncssh.ChannelOpenError as exc:  # the connection is fine: retried on it
            raise TransportError(f"SSH: {exc or type(exc).__name__}") from None
        except (asyncssh.Error, OSError) as exc:
            await self.close()
            raise TransportError(f"SSH: {exc or type(exc).__name__}") from None
        status = result.exit_status if result.exit_status is not None else 255
        return CommandResult(
            tuple(argv), status, str(result.stdout or ""), str(result.stderr or "")
        )

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            try:
                await conn.wait_closed()
            except Exception:  # a broken connection may fail to close, too
                pass
