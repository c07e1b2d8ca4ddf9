"""Which batch runs which jobs when the batches of a group share work: claims in the run dir.

A batch's jobs are cut into chunks of `claim_chunk` consecutive jobs (one job where jobs are
long, several where they are short, so a 20,000-job run makes hundreds of claims, not 20,000),
by their place in the batch as planned: a retry or continuation of some of them keeps it
(`JobSpec.claim_index`), so it claims the chunks its planned batch did.
Whoever runs a chunk — its own batch, or another batch of the group with a free slot — first
claims it: `mkdir claims/<batch>/<chunk>`. mkdir is atomic on every file system the nodes
share, NFS included (O_EXCL is not on NFSv2 and old clients): exactly one claimer succeeds,
and the chunk's jobs run exactly once. The winner then writes `by.json` in it (which batch,
which SLURM job, which host): readers tolerate a claim whose `by.json` is not written yet.

Records of a job run by another batch go to `results/<owner>.by-<runner>.jsonl` (one writer
per file: appends from several hosts to one file are not atomic on NFS); the owner's readers
read `<owner>*.jsonl`, so every reader finds a job's record wherever it ran.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Container, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from airflow_jobforge.rundir.batches import BatchSpec
from airflow_jobforge.rundir.records import RESULTS_DIR

CLAIMS_DIR = "claims"
CLAIM_FILE = "by.json"
SHARED_MARK = ".by-"


@dataclass(frozen=True)
class Claim:
    """Who claimed a chunk."""

    batch: str
    hpc_job_id: str | None = None
    host: str | None = None
    t: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> Claim:
        return cls(
            batch=str(data["batch"]),
            hpc_job_id=data.get("hpc_job_id"),
            host=data.get("host"),
            t=float(data.get("t") or 0.0),
        )


def claims_dir(run_dir: str | os.PathLike[str], batch: str) -> Path:
    return Path(run_dir) / CLAIMS_DIR / batch


def chunk_name(chunk: int) -> str:
    return f"{chunk:06d}"


def chunk_dir(run_dir: str | os.PathLike[str], batch: str, chunk: int) -> Path:
    return claims_dir(run_dir, batch) / chunk_name(chunk)


def chunk_count(jobs: int, chunk_size: int) -> int:
    return -(-jobs // max(1, chunk_size))


def claim_json(claim: Claim) -> str:
    """What `by.json` holds: the claim, stamped now unless it says when."""
    return json.dumps({**asdict(claim), "t": claim.t or time.time()})


def try_claim(run_dir: str | os.PathLike[str], batch: str, chunk: int, claim: Claim) -> bool:
    """Claim chunk `chunk` of `batch` for `claim.batch`; False when someone has it."""
    path = chunk_dir(run_dir, batch, chunk)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        return False
    tmp = path / f".{CLAIM_FILE}.{os.getpid()}"
    tmp.write_text(claim_json(claim), encoding="utf-8")
    tmp.replace(path / CLAIM_FILE)
    return True


def chunk_places(spec: BatchSpec) -> list[tuple[str, int]]:
    """(job, place in the planned batch) for each job of the spec."""
    return [(job.name, job.place(i)) for i, job in enumerate(spec.jobs)]


def chunks_without_records(
    places: Iterable[tuple[str, int]], chunk_size: int, recorded: Container[str]
) -> list[int]:
    """The chunks holding a job (name, place) that has no record yet."""
    size = max(1, chunk_size)
    return sorted({place // size for name, place in places if name not in recorded})


def is_claimed(run_dir: str | os.PathLike[str], batch: str, chunk: int) -> bool:
    return chunk_dir(run_dir, batch, chunk).is_dir()


def read_claims(run_dir: str | os.PathLike[str], batch: str) -> dict[int, Claim | None]:
    """Chunk -> its claim (None while the claimer has not written who it is yet)."""
    claims: dict[int, Claim | None] = {}
    try:
        entries = list(os.scandir(claims_dir(run_dir, batch)))
    except OSError:
        return claims
    for entry in entries:
        if not entry.name.isdigit():
            continue
        claims[int(entry.name)] = parse_claim(Path(entry.path) / CLAIM_FILE)
    return claims


def parse_claim(path: Path) -> Claim | None:
    try:
        return Claim.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parse_claim_lines(lines: list[str]) -> dict[int, Claim | None]:
    """`<chunk> <by.json>` lines (what a remote `read_claims` prints) -> claims."""
    claims: dict[int, Claim | None] = {}
    for line in lines:
        chunk, _, text = line.partition(" ")
        if not chunk.isdigit():
            continue
        try:
            claims[int(chunk)] = Claim.from_dict(json.loads(text)) if text.strip() else None
        except (ValueError, KeyError, TypeError):
            claims[int(chunk)] = None
    return claims


def shared_results_file(run_dir: str | os.PathLike[str], owner: str, runner: str) -> Path:
    """Where `runner` writes the records of `owner`'s jobs it ran."""
    return Path(run_dir) / RESULTS_DIR / f"{owner}{SHARED_MARK}{runner}.jsonl"


def claimed_away(
    claims: dict[int, Claim | None],
    batch: str,
    chunk_size: int,
    places: Iterable[tuple[str, int]],
) -> dict[str, Claim | None]:
    """The jobs of `batch` (name, place in the planned batch) whose chunk another batch
    claimed: job -> the claim (None: a claim being written, whose claimer is not known yet)."""
    size = max(1, chunk_size)
    away: dict[str, Claim | None] = {}
    for name, place in places:
        chunk = place // size
        if chunk not in claims:
            continue
        claim = claims[chunk]
        if claim is None or claim.batch != batch:
            away[name] = claim
    return away
