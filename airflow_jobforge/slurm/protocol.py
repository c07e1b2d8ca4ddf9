"""The client that operators, sensors, triggers and `jobforge` commands talk to.

Three implementations answer it: `SlurmClient` over the SLURM CLI on this host or over SSH
(`slurm/client.py`), and `LocalClient`, the no-SLURM backend (`local/backend.py`). The async
twins are what triggers use in the triggerer's event loop. Everything past this seam sees
only these methods, so a new backend is a new class, not a new branch in the operators.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Protocol, runtime_checkable

from airflow_jobforge.rundir import ResultRecord
from airflow_jobforge.rundir.claims import Claim
from airflow_jobforge.slurm.client import QueuedJob, SubmittedJob
from airflow_jobforge.slurm.script import SubmitRequest
from airflow_jobforge.slurm.states import JobStatus
from airflow_jobforge.slurm.usage import BatchUsage


@runtime_checkable
class BatchClient(Protocol):
    """Submit batches, follow them, read what they left; blocking calls."""

    supports_arrays: bool  # one-job batches may go as one SLURM job array

    def submit(self, request: SubmitRequest, *, adopt: bool = True) -> SubmittedJob:
        """Submit `request`, or (with `adopt`) return the job already submitted under its
        tag: a retry never submits twice."""
        ...

    def find(self, tag: str, *, deep: bool = True) -> str | None:
        """The job id submitted under `tag`; `deep` asks accounting too, not only the queue."""
        ...

    def status(
        self, job_ids: Iterable[str], exit_files: Mapping[str, str] | None = None
    ) -> dict[str, JobStatus]: ...

    def cancel(self, job_ids: Iterable[str]) -> None: ...

    def tail_logs(self, path: str, lines: int = 50) -> str: ...

    def tails(self, paths: Iterable[str], lines: int = 30) -> dict[str, str]: ...

    def queued(self, prefix: str) -> list[QueuedJob]:
        """Queued or running jobs whose name starts with `prefix` (one run's batches)."""
        ...

    def job_nodes(self, job_id: str, states: Collection[str] | None = None) -> list[str]:
        """The nodes a job ran on (those in `states` when given): what a resubmission after
        NODE_FAIL excludes."""
        ...

    def partition_nodes(self, partition: str | None) -> list[str]: ...

    def read_results(
        self, output_dir: str, batch: str | None = None
    ) -> dict[str, ResultRecord]: ...

    def read_claims(self, output_dir: str, batch: str) -> dict[int, Claim | None]:
        """Who claimed which chunk of a batch that shares work (rundir.claims)."""
        ...

    def claim_chunks(
        self, output_dir: str, batch: str, chunks: Iterable[int], claim: Claim
    ) -> dict[int, Claim | None]:
        """Claim for `claim` those of `chunks` nobody has (as a runner does), then who has
        each chunk of the batch: so that no batch starts a job whose record the Airflow side
        is about to write."""
        ...

    def append_text(self, path: str, text: str) -> None: ...

    def write_text(self, path: str, text: str) -> None: ...

    def usage(self, job_ids: Iterable[str]) -> dict[str, BatchUsage]: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncBatchClient(Protocol):
    """What a trigger needs, without blocking the triggerer's event loop."""

    async def submit(self, request: SubmitRequest, *, adopt: bool = True) -> SubmittedJob: ...

    async def status(
        self, job_ids: Iterable[str], exit_files: Mapping[str, str] | None = None
    ) -> dict[str, JobStatus]: ...

    async def cancel(self, job_ids: Iterable[str]) -> None: ...

    async def tail_logs(self, path: str, lines: int = 50) -> str: ...

    async def tails(self, paths: Iterable[str], lines: int = 30) -> dict[str, str]: ...

    async def queued(self, prefix: str) -> list[QueuedJob]: ...

    async def read_results(
        self, output_dir: str, batch: str | None = None
    ) -> dict[str, ResultRecord]: ...

    async def read_claims(self, output_dir: str, batch: str) -> dict[int, Claim | None]: ...

    async def claim_chunks(
        self, output_dir: str, batch: str, chunks: Iterable[int], claim: Claim
    ) -> dict[int, Claim | None]: ...

    async def append_text(self, path: str, text: str) -> None: ...

    async def usage(self, job_ids: Iterable[str]) -> dict[str, BatchUsage]: ...

    async def close(self) -> None: ...
