"""Which of a batch's jobs may start now, as the jobs blocking them end.

A job waits once for each of its blockers inside the batch, however often it names one; its
blockers in earlier batches are `external_blockers`, settled from their records before the
batch starts. Jobs become ready in the order they are released (at the start, the batch's
order), and the runner starts them in that order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Container, Sequence

from airflow_jobforge.rundir.batches import JobSpec


class JobGraph:
    """The jobs' blocking edges and the ready queue.

    Recording is the runner's: `recorded` is its set of jobs with a record (a dependant that
    has one is left alone), and `cancel` records a job canceled because a blocker failed.
    """

    __slots__ = (
        "ready",
        "_queued",
        "_order",
        "_jobs",
        "_dependants",
        "_waiting_on",
        "_recorded",
        "_cancel",
    )

    def __init__(
        self,
        jobs: Sequence[JobSpec],
        recorded: Container[str],
        cancel: Callable[[JobSpec, str], None],
    ) -> None:
        self.ready: deque[str] = deque()
        self._queued: set[str] = set()
        self._order = jobs
        self._jobs = {job.name: job for job in jobs}
        self._dependants: dict[str, list[str]] = {}
        self._waiting_on: dict[str, int] = {}
        self._recorded = recorded
        self._cancel = cancel
        for job in jobs:
            inside = [b for b in dict.fromkeys(job.blocked_by) if b in self._jobs and b != job.name]
            self._waiting_on[job.name] = len(inside)
            for b in inside:
                self._dependants.setdefault(b, []).append(job.name)

    def start(self, failed_outside: Collection[str]) -> None:
        """Cancel the jobs an external blocker failed, queue those that wait for nothing.

        A cancel here releases its dependants at once, so this pass meets jobs that are
        already canceled or queued: each job gets one record and runs once."""
        for job in self._order:
            if job.name in self._recorded or job.name in self._queued:
                continue
            bad = [b for b in job.external_blockers if b in failed_outside]
            if bad and job.cancel_on_blocking_job_failure:
                self._cancel_and_release(job.name, f"blocking job {bad[0]!r} did not succeed")
            elif self._waiting_on[job.name] == 0:
                self._queue(job.name)

    def take(self) -> JobSpec:
        return self._jobs[self.ready.popleft()]

    def release(self, name: str, succeeded: bool) -> None:
        for d in self._dependants.get(name, ()):
            if d in self._recorded:
                continue
            if not succeeded and self._jobs[d].cancel_on_blocking_job_failure:
                self._cancel_and_release(d, f"blocking job {name!r} did not succeed")
                continue
            self._waiting_on[d] -= 1
            if self._waiting_on[d] == 0:
                self._queue(d)

    def _queue(self, name: str) -> None:
        if name not in self._queued:
            self._queued.add(name)
            self.ready.append(name)

    def _cancel_and_release(self, name: str, reason: str) -> None:
        self._cancel(self._jobs[name], reason)
        self.release(name, False)
