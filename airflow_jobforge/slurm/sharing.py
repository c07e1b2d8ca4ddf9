"""The Airflow side of work sharing between batches (`node.sharing`, `rundir.claims`): which
of a batch's jobs other batches took, and which of those still run there, asked through the
same client (local, SLURM CLI or SSH) as everything else.

A batch's wait uses it not to record missing what another batch is still running, and not to
retry (with more memory or time) what another batch took; a user's cancel uses it not to
record canceled what runs elsewhere.
"""

from __future__ import annotations

from airflow_jobforge.rundir import ResultRecord
from airflow_jobforge.rundir.claims import (
    Claim,
    chunk_places,
    chunks_without_records,
    claimed_away,
)
from airflow_jobforge.slurm.protocol import BatchClient
from airflow_jobforge.slurm.script import SubmitRequest
from airflow_jobforge.slurm.states import Outcome

BEING_WRITTEN = "(a claim being written)"
AIRFLOW_SIDE = "airflow"  # the host of a claim the wait or a cancel made for the batch


def taken_by_others(client: BatchClient, request: SubmitRequest) -> dict[str, Claim | None]:
    """The batch's jobs another batch claimed (job -> claim; None while being written)."""
    batch = request.batch
    if not batch.share:
        return {}
    claims = client.read_claims(request.output_dir, batch.batch)
    return claimed_away(claims, batch.batch, batch.claim_chunk, chunk_places(batch))


def secure_unrecorded(
    client: BatchClient,
    request: SubmitRequest,
    records: dict[str, ResultRecord],
    job_id: str | None,
) -> dict[str, Claim | None]:
    """Before the Airflow side records a batch's jobs that have no record (missing, canceled):
    claims for the batch the chunks of those jobs that nobody has claimed, so that no other
    batch starts one after its record is written (a job has exactly one record). Returns
    the jobs other batches hold, as `taken_by_others` does."""
    batch = request.batch
    if not batch.share:
        return {}
    places = chunk_places(batch)
    chunks = chunks_without_records(places, batch.claim_chunk, records)
    if not chunks:
        return taken_by_others(client, request)
    claims = client.claim_chunks(
        request.output_dir, batch.batch, chunks, Claim(batch.batch, job_id, AIRFLOW_SIDE)
    )
    return claimed_away(claims, batch.batch, batch.claim_chunk, places)


def claimed_and_running(
    client: BatchClient, away: dict[str, Claim | None], records: dict[str, ResultRecord]
) -> dict[str, str]:
    """Jobs of the batch without a record whose claimer (`away`: what `taken_by_others` or
    `secure_unrecorded` gave) is still in the queue: job -> the claiming batch. A claimer
    that has ended recorded what it ran (or the wait's completion records it missing), so
    it is not waited for."""
    pending = {n: c for n, c in away.items() if n not in records}
    if not pending:
        return {}
    ids = sorted({c.hpc_job_id for c in pending.values() if c is not None and c.hpc_job_id})
    live: set[str] = set()
    if ids:
        statuses = client.status(ids)
        live = {i for i, status in statuses.items() if status.outcome is Outcome.RUNNING}
    return {
        name: BEING_WRITTEN if claim is None else claim.batch
        for name, claim in pending.items()
        if claim is None or claim.hpc_job_id in live
    }
