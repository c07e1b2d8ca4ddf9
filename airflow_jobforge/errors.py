"""One exception family, so the CLI can turn any of them into one line and exit code 2."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class JobForgeError(Exception):
    """Base of every error a user can cause; carries where it happened."""

    def __init__(self, reason: str, *, file: str | None = None, job: str | None = None) -> None:
        self.reason = reason
        self.file = file
        self.job = job
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.job:
            where.append(f"job {self.job!r}")
        prefix = ": ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration; `where` names the job or group at fault."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" if self.where else self.reason


class ConfigError(JobForgeError):
    """A configuration is invalid; holds every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem], *, file: str | None = None) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        reason = f"{n} problem{'s' if n != 1 else ''} in configuration:\n" + "\n".join(
            f"  - {p}" for p in self.problems
        )
        super().__init__(reason, file=file)


class ExtensionError(JobForgeError):
    """An extension is unknown, malformed or cannot be imported."""


class SlurmError(JobForgeError):
    """A SLURM command failed; the message carries the command's stderr."""
