"""How busy each batch kept its slots: the figure that shows static batching's idle tail.

A batch runs `num_processes` jobs at a time on its allocation: its slots. From the moment
its runner started (the `batch_started` event) to the end of its last job, every slot-second
not spent running a job is paid for and wasted: a batch whose last jobs are long keeps its
other slots idle while they run, and an allocation whose jobs end early idles until the
next batch's start. Utilisation = busy slot-seconds / (slots x elapsed); idle node-hours =
nodes x elapsed x (1 - utilisation).

Pure: events and records in, figures out. A batch without its start event (a runner before
this figure existed, or a batch that never ran) is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from airflow_jobforge.rundir.events import BATCH_STARTED, Event
from airflow_jobforge.rundir.records import ResultRecord


@dataclass(frozen=True)
class SlotUse:
    batch: str
    hpc_job_id: str | None
    slots: int
    nodes: int
    jobs: int
    started: float
    ended: float
    busy_s: float
    others: int = 0
    """Jobs of other batches this batch ran (work sharing)."""

    @property
    def elapsed_s(self) -> float:
        return max(0.0, self.ended - self.started)

    @property
    def utilisation(self) -> float | None:
        capacity = self.slots * self.elapsed_s
        return min(1.0, self.busy_s / capacity) if capacity > 0 else None

    @property
    def idle_node_hours(self) -> float:
        use = self.utilisation
        return 0.0 if use is None else self.nodes * self.elapsed_s * (1 - use) / 3600

    def to_dict(self) -> dict:
        return {
            "batch": self.batch,
            "hpc_job_id": self.hpc_job_id,
            "slots": self.slots,
            "nodes": self.nodes,
            "jobs": self.jobs,
            "jobs_of_other_batches": self.others,
            "elapsed_s": round(self.elapsed_s, 3),
            "busy_slot_s": round(self.busy_s, 3),
            "utilisation": None if self.utilisation is None else round(self.utilisation, 4),
            "idle_node_hours": round(self.idle_node_hours, 6),
        }


def slot_use(events: Iterable[Event], records: Mapping[str, ResultRecord]) -> list[SlotUse]:
    """One entry per batch run (a batch retried runs again: its latest start counts), in
    start order."""
    starts: dict[str, Event] = {}
    for event in events:
        if event.type == BATCH_STARTED and event.batch:
            starts[event.batch] = event
    ran: dict[str, list[ResultRecord]] = {}
    for record in records.values():
        if record.start is not None:  # counted where it ran (work sharing: maybe elsewhere)
            ran.setdefault(record.ran_in or record.batch, []).append(record)
    uses = []
    for batch, event in starts.items():
        mine = [r for r in ran.get(batch, ()) if r.end >= event.t]
        if not mine:
            continue
        data = event.data or {}
        uses.append(
            SlotUse(
                batch=batch,
                hpc_job_id=event.hpc_job_id,
                slots=max(1, int(data.get("num_processes") or 1)),
                nodes=max(1, int(data.get("nodes") or 1)),
                jobs=len(mine),
                started=event.t,
                ended=max(r.end for r in mine),
                busy_s=sum(r.exec_time_s for r in mine),
                others=sum(1 for r in mine if r.ran_in),
            )
        )
    return sorted(uses, key=lambda u: (u.started, u.batch))


@dataclass(frozen=True)
class SlotTotals:
    batches: int
    busy_s: float
    capacity_s: float
    idle_node_hours: float
    makespan_s: float
    others: int = 0

    @property
    def utilisation(self) -> float | None:
        return self.busy_s / self.capacity_s if self.capacity_s > 0 else None


def slot_totals(uses: Iterable[SlotUse]) -> SlotTotals:
    uses = list(uses)
    busy = sum(u.busy_s for u in uses)
    capacity = sum(u.slots * u.elapsed_s for u in uses)
    makespan = max((u.ended for u in uses), default=0.0) - min(
        (u.started for u in uses), default=0.0
    )
    return SlotTotals(
        batches=len(uses),
        busy_s=busy,
        capacity_s=capacity,
        idle_node_hours=sum(u.idle_node_hours for u in uses),
        makespan_s=makespan,
        others=sum(u.others for u in uses),
    )
