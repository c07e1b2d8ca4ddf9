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
import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_jobforge.node.say import say
from airflow_jobforge.rundir.batches import BATCHES_DIR, BatchSpec, JobSpec
from airflow_jobforge.rundir.claims import (
    CLAIM_FILE,
    Claim,
    chunk_dir,
    is_claimed,
    parse_claim,
    read_claims,
    try_claim,
)

if TYPE_CHECKING:
    from airflow_jobforge.node.runner import BatchRunner


@dataclass
class _Peer:
    spec: BatchSpec
    parts: dict[int, list[JobSpec]] = field(default_factory=dict)
    chunks: list[int] = field(default_factory=list)
    """Chunks not known to be claimed, that may be taken; the last is tried first."""


def takeable_chunks(spec: BatchSpec) -> list[int]:
    """The chunks of `spec` another batch may run: no job in them waits for anything, and
    no job of the batch waits for one of them."""
    awaited = {b for job in spec.jobs for b in job.blocked_by}
    return [
        chunk
        for chunk, part in chunk_jobs(spec).items()
        if all(not j.blocked_by and not j.external_blockers and j.name not in awaited for j in part)
    ]


def chunk_jobs(spec: BatchSpec) -> dict[int, list[JobSpec]]:
    """The spec's jobs by claim chunk, in chunk order."""
    size = max(1, spec.claim_chunk)
    chunks: dict[int, list[JobSpec]] = {}
    for position, job in enumerate(spec.jobs):
        chunks.setdefault(job.place(position) // size, []).append(job)
    return dict(sorted(chunks.items()))


class WorkSharing:
    """One runner's side: its own chunks claimed as it starts them (`own`), other batches'
    taken when it has room (`next_job`)."""

    def __init__(self, runner: BatchRunner) -> None:
        spec = runner.spec
        self.spec = spec
        self.output_dir = Path(runner.output_dir)
        self.size = max(1, spec.claim_chunk)
        self.chunk_of = {job.name: job.place(i) // self.size for i, job in enumerate(spec.jobs)}
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
        chunk = self.chunk_of[job.name]
        mine = self.mine.get(chunk)
        if mine is None:
            mine = self.mine[chunk] = self._claim(self.spec.batch, chunk)
        return mine

    def known_away(self, job: JobSpec) -> bool:
        """Whether another batch is known to have claimed `job` (nothing is claimed to know)."""
        return self.mine.get(self.chunk_of[job.name]) is False

    def _claim(self, batch: str, chunk: int) -> bool:
        try:
            if try_claim(self.output_dir, batch, chunk, self.claim):
                return True
            # An earlier allocation of this batch (before a resubmission, a retry with more
            # resources, a continuation) claimed it: it is still this batch's to run.
            if batch != self.spec.batch:
                return False
            claim = parse_claim(chunk_dir(self.output_dir, batch, chunk) / CLAIM_FILE)
            return claim is not None and claim.batch == batch and claim != self.claim
        except OSError as exc:
            if not self._said:
                say(f"work sharing: cannot claim in {self.output_dir}: {exc}; running own jobs")
                self._said = True
            return batch == self.spec.batch  # our own still run; others' are left alone

    # --- other batches' jobs ----------------------------------------------------------------
    def next_job(self, fits: Callable[[list[JobSpec]], bool]) -> tuple[str, JobSpec] | None:
        """(owner batch, job) to run now, claimed; None when nothing is left to take. A chunk
        is taken only when `fits` says its jobs end in this allocation's time."""
        if not self.queue:
            self._take_chunk(fits)
        if not self.queue:
            return None
        self.ran_for_others += 1
        return self.queue.popleft()

    def drain(self) -> list[tuple[str, JobSpec]]:
        """What was claimed and not started (the batch is ending): recorded by the caller."""
        left = list(self.queue)
        self.queue.clear()
        return left

    def _take_chunk(self, fits: Callable[[list[JobSpec]], bool]) -> None:
        for name, peer in self._peers():
            for at in range(len(peer.chunks) - 1, -1, -1):
                chunk = peer.chunks[at]
                if is_claimed(self.output_dir, name, chunk):
                    del peer.chunks[at]
                    continue
                part = peer.parts[chunk]
                if not fits(part):
                    continue  # left to its batch, or to a runner with more time
                del peer.chunks[at]
                if self._claim(name, chunk):
                    self.queue.extend((name, job) for job in part)
                    return

    # --- surplus ----------------------------------------------------------------------------
    def cancel_surplus(self, own_job_id: str) -> list[tuple[str, str]]:
        """Cancel the group's batches still pending in the SLURM queue whose every chunk other
        batches claimed: started, they would find nothing to run. Only pending ones
        (`scancel --state=PENDING`: the controller checks the state, so a batch that has
        started meanwhile is left alone). Returns (batch, SLURM job id) of each canceled.
        Best effort: a node without squeue/scancel cancels nothing."""
        self._peers()  # batches submitted since the last look
        surplus = [name for name, peer in self.peers.items() if peer and self._all_claimed(peer)]
        if not surplus:
            return []
        prefix = _run_prefix(os.environ.get("SLURM_JOB_NAME", ""), self.spec.batch)
        if prefix is None:
            return []
        pending = _pending_jobs()
        found = [
            (name, job_id)
            for job_id, job_name in pending
            for name in surplus
            if job_name.startswith(f"{prefix}.{name}.") and job_id != own_job_id
        ]
        if not found:
            return []
        try:
            subprocess.run(
                ["scancel", "--state=PENDING", *(job_id for _, job_id in found)],
                capture_output=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            say(f"work sharing: surplus batches not canceled: {exc}")
            return []
        return found

    def _all_claimed(self, peer: _Peer) -> bool:
        """Whether every chunk of the peer is claimed by another batch than the peer."""
        if len(peer.chunks) or len(takeable_chunks(peer.spec)) != len(peer.parts):
            return False  # chunks left to take, or jobs only the peer itself may run
        claims = read_claims(self.output_dir, peer.spec.batch)
        return all(
            (claim := claims.get(chunk)) is not None and claim.batch != peer.spec.batch
            for chunk in peer.parts
        )

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
            peer = _Peer(spec, chunk_jobs(spec), takeable_chunks(spec)) if same else None
            self.peers[name] = peer
        return [
            (name, peer)
            for name, peer in sorted(self.peers.items(), reverse=True)
            if peer is not None and peer.chunks
        ]


def _run_prefix(job_name: str, batch: str) -> str | None:
    """`jf-<run key>` of this batch's SLURM job name `jf-<run key>.<batch>.<try>`: the other
    batches of the run carry the same prefix (slurm.tags)."""
    head, sep, _ = job_name.partition(f".{batch}.")
    return head if sep and head else None


def _pending_jobs() -> list[tuple[str, str]]:
    """(job id, job name) of this user's pending SLURM jobs; none when squeue fails."""
    try:
        done = subprocess.run(
            ["squeue", "--me", "--noheader", "--states=PENDING", "--format=%i %j"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if done.returncode != 0:
        return []
    jobs = []
    for line in done.stdout.splitlines():
        job_id, _, name = line.strip().partition(" ")
        if job_id and name:
            jobs.append((job_id, name))
    return jobs
