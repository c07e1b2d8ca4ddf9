"""Where SLURM commands run: behind one small interface, sync and async.

Commands are argv lists, never shell strings; a transport that must go through a remote
shell (SSH) quotes them with shlex.join. Local transports live here; the SSH ones are built
on apache-airflow-providers-ssh in `airflow_jobforge.hooks.ssh_transport`.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from airflow_jobforge.errors import SlurmError

DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> CommandResult:
        if self.returncode != 0:
            raise SlurmError(
                f"{self.argv[0]} failed with exit code {self.returncode}: "
                f"{self.stderr.strip() or self.stdout.strip() or '(no output)'}"
            )
        return self


class TransportError(SlurmError):
    """The transport itself failed (connection lost, command not started)."""


class Transport(Protocol):
    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None
    ) -> CommandResult: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None
    ) -> CommandResult: ...

    async def close(self) -> None: ...


class LocalTransport:
    """The SLURM CLI on this machine."""

    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        try:
            proc = subprocess.run(
                list(argv),
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout or DEFAULT_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            raise TransportError(f"{argv[0]}: command not found (is SLURM installed?)") from None
        except subprocess.TimeoutExpired:
            raise TransportError(f"{argv[0]} timed out after {timeout}s") from None
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def close(self) -> None:
        pass


class AsyncLocalTransport:
    async def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError:
            raise TransportError(f"{argv[0]}: command not found (is SLURM installed?)") from None
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(input.encode() if input is not None else None),
                timeout or DEFAULT_TIMEOUT_S,
            )
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise TransportError(f"{argv[0]} timed out after {timeout}s") from None
        return CommandResult(
            tuple(argv),
            proc.returncode or 0,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )

    async def close(self) -> None:
        pass
