"""How well each batch used its SLURM allocation, from sacct: CPU and memory efficiency and
node-hours per batch, and totals per run.

sacct prints one allocation line per job and one line per step (`.batch`, `.extern`, `.0`,
...). The allocation line carries what was granted and the whole job's CPU time; MaxRSS is
only on the step lines, so a job's peak is the largest of its steps'. Asked with
`--noconvert`, MaxRSS comes in bytes; ReqMem keeps its unit suffix (`200M`). Since 21.08
ReqMem is the job's total request; older versions append `n` (per node) or `c` (per CPU).

Efficiencies are those of `seff`: CPU = TotalCPU / (Elapsed × NCPUS); memory = peak RSS /
memory per node (the cgroup limit applies per node, and MaxRSS is one task's peak). A job
still running has neither yet: sacct adds TotalCPU and MaxRSS when a step ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

# The order parse_sacct_usage expects.
USAGE_FIELDS = (
    "JobID,JobName,State,ElapsedRaw,NCPUS,TotalCPU,MaxRSS,ReqMem,NNodes,NodeList,Start,End"
)
_NFIELDS = len(USAGE_FIELDS.split(","))
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([KMGTP]?)([nc]?)", re.IGNORECASE)
_NOT_A_TIME = ("", "Unknown", "None")


@dataclass(frozen=True)
class BatchUsage:
    """What one SLURM job (a batch's allocation) was given and used.

    `req_mem_bytes` is the job's total memory request over all its nodes. `total_cpu_s`
    and `max_rss_bytes` are None while the job runs, and MaxRSS is None when the job ended
    before its first sample (a job killed at once for memory)."""

    job_id: str
    name: str
    state: str
    elapsed_s: float
    ncpus: int
    nnodes: int
    total_cpu_s: float | None = None
    max_rss_bytes: int | None = None
    req_mem_bytes: int | None = None
    nodelist: str | None = None
    start: str | None = None
    end: str | None = None

    @property
    def ended(self) -> bool:
        return self.end is not None

    @property
    def cpu_efficiency(self) -> float | None:
        """Fraction of the allocated CPU time used; above 1 only by sacct's rounding of
        Elapsed to whole seconds."""
        allocated = self.elapsed_s * self.ncpus
        if not self.ended or self.total_cpu_s is None or allocated <= 0:
            return None
        return self.total_cpu_s / allocated

    @property
    def mem_per_node_bytes(self) -> int | None:
        if not self.req_mem_bytes:
            return None
        return self.req_mem_bytes // max(self.nnodes, 1)

    @property
    def mem_efficiency(self) -> float | None:
        per_node = self.mem_per_node_bytes
        if not self.ended or self.max_rss_bytes is None or not per_node:
            return None
        return self.max_rss_bytes / per_node

    @property
    def node_hours(self) -> float:
        return self.elapsed_s * max(self.nnodes, 1) / 3600

    @property
    def cpu_hours_allocated(self) -> float:
        return self.elapsed_s * self.ncpus / 3600

    @property
    def cpu_hours_used(self) -> float | None:
        return None if self.total_cpu_s is None else self.total_cpu_s / 3600

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchUsage:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class UsageTotals:
    """A run's sums over its SLURM jobs. CPU efficiency counts ended jobs only (a running
    job has no TotalCPU yet); memory efficiency is the mean over jobs where it is known."""

    jobs: int
    node_hours: float
    cpu_hours_allocated: float
    cpu_hours_used: float
    cpu_efficiency: float | None
    mem_efficiency: float | None
    peak_rss_bytes: int | None


def parse_duration(text: str) -> float | None:
    """sacct's `[D-][HH:]MM:SS[.mmm]` (TotalCPU) in seconds; None when not a duration."""
    text = text.strip()
    days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
    parts = rest.split(":")
    if not days.isdigit() or not 2 <= len(parts) <= 3:
        return None
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    seconds = 0.0
    for value in values:
        seconds = seconds * 60 + value
    return int(days) * 86400 + seconds


def parse_size(text: str) -> int | None:
    """MaxRSS: bytes (`--noconvert`) or a number with a K/M/G/T/P suffix (1024-based)."""
    match = _SIZE.fullmatch(text.strip())
    if not match or match.group(3):
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_req_mem(text: str, ncpus: int, nnodes: int) -> int | None:
    """ReqMem as the job's total bytes. A bare number is megabytes (sacct's unit for it);
    a trailing `n` means per node and `c` per CPU (SLURM before 21.08)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        return None
    number, unit, per = match.groups()
    size = int(float(number) * _UNITS[unit.upper() or "M"])
    if per == "c":
        return size * max(ncpus, 1)
    if per == "n":
        return size * max(nnodes, 1)
    return size


def _int(text: str) -> int:
    return int(text) if text.strip().isdigit() else 0


def _time(text: str) -> str | None:
    return None if text.strip() in _NOT_A_TIME else text.strip()


def parse_sacct_usage(stdout: str) -> dict[str, BatchUsage]:
    """`sacct -P -n --noconvert --format=USAGE_FIELDS` -> usage per job id.

    A line whose JobName holds the `|` delimiter has extra fields: they are rejoined into
    the name. Steps of a job whose allocation line is absent are ignored."""
    allocations: dict[str, list[str]] = {}
    peaks: dict[str, int] = {}
    for line in stdout.splitlines():
        parts = line.rstrip("\n").split("|")
        if len(parts) < _NFIELDS or not parts[0].strip():
            continue
        extra = len(parts) - _NFIELDS
        if extra:
            parts = [parts[0], "|".join(parts[1 : 2 + extra]), *parts[2 + extra :]]
        job_id, _, step = parts[0].strip().partition(".")
        if not step:
            allocations[job_id] = parts
        rss = parse_size(parts[6]) if parts[6].strip() else None
        if rss is not None:
            peaks[job_id] = max(peaks.get(job_id, 0), rss)
    usage = {}
    for job_id, parts in allocations.items():
        _, name, state, elapsed, ncpus_text, total_cpu, _, req_mem, nnodes_text = parts[:9]
        nodelist, start, end = parts[9:12]
        ncpus, nnodes = _int(ncpus_text), _int(nnodes_text)
        end_time = _time(end)
        usage[job_id] = BatchUsage(
            job_id=job_id,
            name=name,
            state=state.split()[0] if state.strip() else "UNKNOWN",  # "CANCELLED by 0"
            elapsed_s=float(_int(elapsed)),
            ncpus=ncpus,
            nnodes=nnodes,
            total_cpu_s=parse_duration(total_cpu) if end_time else None,
            max_rss_bytes=peaks.get(job_id),
            req_mem_bytes=parse_req_mem(req_mem, ncpus, nnodes),
            nodelist=None if nodelist.strip() in ("", "None assigned") else nodelist.strip(),
            start=_time(start),
            end=end_time,
        )
    return usage


def usage_totals(usages: Iterable[BatchUsage]) -> UsageTotals:
    usages = list(usages)
    ended = [u for u in usages if u.ended and u.total_cpu_s is not None]
    allocated = sum(u.cpu_hours_allocated for u in ended)
    used = sum(u.cpu_hours_used or 0.0 for u in ended)
    mem = [e for e in (u.mem_efficiency for u in usages) if e is not None]
    peaks = [u.max_rss_bytes for u in usages if u.max_rss_bytes is not None]
    return UsageTotals(
        jobs=len(usages),
        node_hours=sum(u.node_hours for u in usages),
        cpu_hours_allocated=sum(u.cpu_hours_allocated for u in usages),
        cpu_hours_used=used,
        cpu_efficiency=used / allocated if allocated > 0 else None,
        mem_efficiency=sum(mem) / len(mem) if mem else None,
        peak_rss_bytes=max(peaks) if peaks else None,
    )
