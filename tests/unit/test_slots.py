"""Slot use per batch: the idle tail of static batching, in figures."""

from __future__ import annotations

import pytest

from airflow_jobforge.results.slots import slot_totals, slot_use
from airflow_jobforge.results.stats import format_stats, gather_stats, stats_to_dict
from airflow_jobforge.rundir import ResultRecord, ResultsWriter, results_file
from airflow_jobforge.rundir.events import BATCH_STARTED, Event, EventLog


def record(name: str, batch: str, start: float, seconds: float) -> ResultRecord:
    return ResultRecord(
        name=name,
        status="finished",
        return_code=0,
        exec_time_s=seconds,
        start=start,
        end=start + seconds,
        batch=batch,
    )


def started(batch: str, t: float, slots: int, nodes: int = 1) -> Event:
    return Event(
        type=BATCH_STARTED, t=t, batch=batch, data={"num_processes": slots, "nodes": nodes}
    )


# A sweep in two batches of two slots: batch 1 has the short jobs (1 s, 1 s, 2 s, 2 s),
# batch 2 the long ones (4 s, 4 s, 8 s, 8 s): batch 1 is done at 3 s, batch 2 runs to 12 s.
SWEEP = {
    r.name: r
    for r in (
        record("a", "g-0000", 100, 1),
        record("b", "g-0000", 100, 1),
        record("c", "g-0000", 101, 2),
        record("d", "g-0000", 101, 2),
        record("e", "g-0001", 100, 4),
        record("f", "g-0001", 100, 4),
        record("g", "g-0001", 104, 8),
        record("h", "g-0001", 104, 8),
    )
}
EVENTS = [started("g-0000", 100, 2), started("g-0001", 100, 2)]


def test_a_batch_whose_jobs_fill_its_slots_is_fully_used():
    (first, second) = slot_use(EVENTS, SWEEP)
    assert first.batch == "g-0000" and first.elapsed_s == 3 and first.busy_s == 6
    assert first.utilisation == pytest.approx(1.0)
    assert second.elapsed_s == 12 and second.utilisation == pytest.approx(1.0)


def test_the_idle_tail_of_a_batch_is_its_slots_left_empty_while_a_long_job_runs():
    records = dict(SWEEP)
    records["h"] = record("h", "g-0001", 104, 2)  # one long job alone at the end
    (_, second) = slot_use(EVENTS, records)
    assert second.elapsed_s == 12 and second.busy_s == 18
    assert second.utilisation == pytest.approx(18 / 24)
    assert second.idle_node_hours == pytest.approx(12 * (1 - 18 / 24) / 3600)


def test_totals_say_what_share_of_the_batches_slot_time_was_busy():
    totals = slot_totals(slot_use(EVENTS, SWEEP))
    assert totals.batches == 2 and totals.busy_s == 30 and totals.capacity_s == 30
    assert totals.makespan_s == 12


def test_nodes_multiply_the_idle_node_hours_and_old_records_of_a_retried_batch_do_not_count():
    records = {
        "x": record("x", "m-0000", 50, 10),  # the first try, before the retry's start
        "y": record("y", "m-0000", 200, 10),
    }
    (use,) = slot_use([started("m-0000", 200, 4, nodes=2)], records)
    assert use.jobs == 1 and use.utilisation == pytest.approx(10 / 40)
    assert use.idle_node_hours == pytest.approx(2 * 10 * 0.75 / 3600)


def test_a_batch_without_a_start_event_or_jobs_that_ran_is_left_out():
    assert slot_use([], SWEEP) == []
    assert slot_use([started("z-0000", 1, 2)], SWEEP) == []


def test_stats_show_slot_use_from_the_run_dir(tmp_path):
    for r in SWEEP.values():
        writer = ResultsWriter(results_file(tmp_path, r.batch))
        writer.append(r)
        writer.close()
    for event in EVENTS:
        EventLog(tmp_path, f"batch-{event.batch}").emit(
            event.type, t=event.t, batch=event.batch, data=event.data
        )
    stats = gather_stats(tmp_path)
    text = format_stats(stats)
    assert "Slot use" in text and "Slots busy 100.0% of the batches' slot-time" in text
    assert [u["batch"] for u in stats_to_dict(stats)["slot_use"]] == ["g-0000", "g-0001"]


def test_a_job_another_batch_ran_counts_where_it_ran():
    taken = ResultRecord(
        name="t",
        status="finished",
        return_code=0,
        exec_time_s=4,
        start=103,
        end=107,
        batch="g-0001",
        ran_in="g-0000",
    )
    records = {**SWEEP, "t": taken}
    (first, second) = slot_use(EVENTS, records)
    assert first.jobs == 5 and first.others == 1 and first.busy_s == 10
    assert second.jobs == 4 and second.others == 0
    assert slot_totals([first, second]).others == 1
