"""Work sharing between the batches of a group: a runner with a free slot and nothing of its
own ready runs the ready jobs of the group's other batches, so that no allocation idles
while another still has a queue (the idle tail of static batching).

Every chunk of jobs is claimed before it runs, by its own batch or another
(`rundir.claims`: an atomic mkdir, so each job runs exactly once). A runner learns the other
batches from the run dir's `batches/` (the submit task writes a sharing batch's file before
sbatch, so batches still pending in the queue are there too) and takes chunks from the last
batches first: in a sweep the long jobs are there, and taking them early is what shortens
the tail. A chunk is taken only when none of its jobs waits for another job and no job of
its batch waits for one of them: the owner's order of its dependent jobs stays its own.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_jobforge.node.say import say
from airflow_jobforge.rundir.batches import BATCHES_DIR, BatchSpec, JobSpec
from airflow_jobforge.rundir.claims import Claim, chunk_count, is_claimed, try_claim

if TYPE_CHECKING:
    from airflow_jobforge.node.runner import BatchRunner


@dataclass
class _Peer:
    spec: BatchSpec
    chunks: list[int] = field(default_factory=list)
    """Chunks not known to be claimed, that may be taken; the last is tried first."""


def takeable_chunks(spec: BatchSpec) -> list[int]:
    """The chunks of `spec` another batch may run: no job in them waits for anything, and
    no job of the batch waits for one of them."""
    awaited = {b for job in spec.jobs for b in job.blocked_by}
    size = max(1, spec.claim_chunk)
    chunks = []
    for chunk in range(chunk_count(len(spec.jobs), size)):
        part = spec.jobs[chunk * size : (chunk + 1) * size]
        if all(
            not j.blocked_by and not j.external_blockers and j.name not in awaited for j in part
        ):
            chunks.append(chunk)
    return chunks


class WorkSharing:
    """One runner's side: its own chunks claimed as it starts them (`own`), other batches'
    taken when it has room (`next_job`)."""

    def __init__(self, runner: BatchRunner) -> None:
        spec = runner.spec
        self.spec = spec
        self.output_dir = Path(runner.output_dir)
        self.size = max(1, spec.claim_chunk)
        self.index = {job.name: i for i, job in enumerate(spec.jobs)}
        # The id the wait asks the queue about: SLURM's, or the local backend's.
        allocation = runner.hpc_job_id or os.environ.get("JOBFORGE_JOB_ID")
        self.claim = Claim(batch=spec.batch, hpc_job_id=allocation, host=runner.host)
        self.mine: dict[int, bool] = {}
        self.queue: deque[tuple[str, JobSpec]] = deque()
        self.peers: dict[str, _Peer | None] = {}
        self.ran_for_others = 0
        self._said = False

    # --- own jobs ---------------------------------------------------------------------------
    def own(self, job: JobSpec) -> bool:
        """Whether this batch runs `job`: its chunk claimed here (now or before)."""
        chunk = self.index[job.name] // self.size
        mine = self.mine.get(chunk)
        if mine is None:
            mine = self.mine[chunk] = self._claim(self.spec.batch, chunk)
        return mine

    def _claim(self, batch: str, chunk: int) -> bool:
        try:
            return try_claim(self.output_dir, batch, chunk, self.claim)
        except OSError as exc:
            if not self._said:
                say(f"work sharing: cannot claim in {self.output_dir}: {exc}; running own jobs")
                self._said = True
            return batch == self.spec.batch  # our own still run; others' are left alone

    # --- other batches' jobs ----------------------------------------------------------------
    def next_job(self) -> tuple[str, JobSpec] | None:
        """(owner batch, job) to run now, claimed; None when nothing is left to take."""
        if not self.queue:
            self._take_chunk()
        if not self.queue:
            return None
        self.ran_for_others += 1
        return self.queue.popleft()

    def drain(self) -> list[tuple[str, JobSpec]]:
        """What was claimed and not started (the batch is ending): recorded by the caller."""
        left = list(self.queue)
        self.queue.clear()
        return left

    def _take_chunk(self) -> None:
        for name, peer in self._peers():
            while peer.chunks:
                chunk = peer.chunks.pop()
                if is_claimed(self.output_dir, name, chunk):
                    continue
                if self._claim(name, chunk):
                    size = max(1, peer.spec.claim_chunk)
                    part = peer.spec.jobs[chunk * size : (chunk + 1) * size]
                    self.queue.extend((name, job) for job in part)
                    return

    def _peers(self) -> list[tuple[str, _Peer]]:
        """The group's other sharing batches with chunks left, the last batches first."""
        directory = self.output_dir / BATCHES_DIR
        try:
            names = [
                e.name[: -len(".json")] for e in os.scandir(directory) if e.name.endswith(".json")
            ]
        except OSError:
            names = []
        for name in names:
            if name in self.peers or name == self.spec.batch:
                continue
            try:
                spec = BatchSpec.load(directory / f"{name}.json")
            except (OSError, ValueError, TypeError, KeyError):
                continue  # being written: seen next time
            same = spec.share and spec.group == self.spec.group and spec.batch == name
            self.peers[name] = _Peer(spec, takeable_chunks(spec)) if same else None
        return [
            (name, peer)
            for name, peer in sorted(self.peers.items(), reverse=True)
            if peer is not None and peer.chunks
        ]
