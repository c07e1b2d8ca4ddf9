"""Efficiency from sacct, on outputs recorded on the real cluster
(tests/fixtures/sacct_usage/record.sh: slurm 22.05, cgroup memory limits, jobacct every 1 s).

Expected numbers are worked out by hand from the fixture lines quoted in each test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_jobforge.slurm.client import AsyncSlurmClient, SlurmClient
from airflow_jobforge.slurm.transport import CommandResult
from airflow_jobforge.slurm.usage import (
    parse_duration,
    parse_req_mem,
    parse_sacct_usage,
    parse_size,
    usage_totals,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
USAGE = FIXTURES / "sacct_usage"
ACCT_OFF = (FIXTURES / "slurm" / "sacct_accounting_disabled.err").read_text()
MB = 1024 * 1024


@pytest.fixture(scope="module")
def finished():
    return parse_sacct_usage((USAGE / "usage_finished_noconvert.txt").read_text())


def test_a_cpu_busy_job_uses_all_its_cpu(finished):
    # 4512|usage-busy|COMPLETED|8|1|00:08.051||200M|...; 4512.batch ... MaxRSS 7143424
    busy = finished["4512"]
    assert (busy.name, busy.state, busy.elapsed_s, busy.ncpus) == ("usage-busy", "COMPLETED", 8, 1)
    assert busy.total_cpu_s == pytest.approx(8.051)
    assert busy.cpu_efficiency == pytest.approx(8.051 / 8)  # > 1: Elapsed is whole seconds
    assert busy.max_rss_bytes == 7143424
    assert busy.req_mem_bytes == 200 * MB
    assert busy.mem_efficiency == pytest.approx(7143424 / (200 * MB))
    assert busy.node_hours == pytest.approx(8 / 3600)
    assert busy.nodelist == "vm" and busy.start == "2026-11-26T10:34:36"


def test_a_sleeping_job_uses_almost_no_cpu_of_its_default_memory(finished):
    # 4513|usage-idle|COMPLETED|6|1|00:00.002||2410M: the cluster's DefMemPerCPU
    idle = finished["4513"]
    assert idle.cpu_efficiency == pytest.approx(0.002 / 6)
    assert idle.req_mem_bytes == 2410 * MB
    assert idle.mem_efficiency == pytest.approx(221184 / (2410 * MB))


def test_two_cpus_count_twice_and_mem_per_cpu_shows_as_the_total(finished):
    # sbatch -c 2 --mem-per-cpu=100M: 4515|usage-multi|COMPLETED|6|2|00:09.618||200M
    multi = finished["4515"]
    assert multi.ncpus == 2
    assert multi.cpu_efficiency == pytest.approx(9.618 / 12)
    assert multi.cpu_hours_allocated == pytest.approx(12 / 3600)
    assert multi.req_mem_bytes == 200 * MB


def test_out_of_memory_sampled_near_the_limit_is_near_full_memory_efficiency(finished):
    # 4516|usage-oom-slow|OUT_OF_MEMORY|2|1|00:00.141||50M; .batch MaxRSS 49135616
    oom = finished["4516"]
    assert oom.state == "OUT_OF_MEMORY"
    assert oom.mem_efficiency == pytest.approx(49135616 / (50 * MB))  # 93.7 %


def test_a_job_killed_before_its_first_sample_has_no_peak_and_no_cpu_efficiency(finished):
    # 4514|usage-oom|OUT_OF_MEMORY|0|1|00:00.120||50M; 4514.batch with an empty MaxRSS
    oom = finished["4514"]
    assert oom.state == "OUT_OF_MEMORY" and oom.elapsed_s == 0
    assert oom.max_rss_bytes is None and oom.mem_efficiency is None
    assert oom.cpu_efficiency is None  # nothing allocated yet to divide by


def test_peak_memory_is_the_largest_step_and_cpu_time_the_allocation_line(finished):
    # 4517: TotalCPU 07.804 on the allocation line (= .batch 0.018 + .0 7.784 + .1 0.001);
    # MaxRSS .batch 3878912, .0 7032832, .1 110592
    steps = finished["4517"]
    assert steps.total_cpu_s == pytest.approx(7.804)
    assert steps.max_rss_bytes == 7032832
    assert set(finished) == {"4512", "4513", "4514", "4515", "4516", "4517"}


def test_converted_units_parse_to_the_same_figures_within_a_kibibyte(finished):
    converted = parse_sacct_usage((USAGE / "usage_finished.txt").read_text())
    assert set(converted) == set(finished)
    for job_id, usage in converted.items():
        exact = finished[job_id]
        assert usage.req_mem_bytes == exact.req_mem_bytes
        if exact.max_rss_bytes is None:
            assert usage.max_rss_bytes is None
        else:
            assert abs(usage.max_rss_bytes - exact.max_rss_bytes) < 1024


def test_running_and_pending_jobs_have_no_efficiency_yet():
    # 4518|usage-running|RUNNING|5|2|00:00:00||4820M|1|vm|...|Unknown
    # 4519|usage-pending|PENDING|0|1|00:00:00||2410M|1|None assigned|Unknown|Unknown
    usage = parse_sacct_usage((USAGE / "usage_running.txt").read_text())
    running, pending = usage["4518"], usage["4519"]
    assert not running.ended and running.total_cpu_s is None
    assert running.cpu_efficiency is None and running.mem_efficiency is None
    assert running.node_hours == pytest.approx(5 / 3600)
    assert pending.nodelist is None and pending.start is None and pending.node_hours == 0


def test_run_totals_sum_node_hours_and_weigh_cpu_efficiency_by_allocation(finished):
    totals = usage_totals(finished.values())
    assert totals.jobs == 6
    assert totals.node_hours == pytest.approx((8 + 6 + 0 + 6 + 2 + 10) / 3600)
    assert totals.cpu_hours_allocated == pytest.approx((8 + 6 + 0 + 12 + 2 + 10) / 3600)
    used = 8.051 + 0.002 + 0.120 + 9.618 + 0.141 + 7.804
    assert totals.cpu_hours_used == pytest.approx(used / 3600)
    assert totals.cpu_efficiency == pytest.approx(used / 38)
    assert totals.peak_rss_bytes == 49135616


def test_running_jobs_do_not_dilute_the_cpu_efficiency_of_the_run():
    usage = parse_sacct_usage((USAGE / "usage_running.txt").read_text())
    assert usage_totals(usage.values()).cpu_efficiency is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:08.051", 8.051), ("00:00:00", 0.0), ("12:34:56", 45296.0), ("1-02:03:04", 93784.0)],
)
def test_sacct_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_sizes_are_bytes_or_binary_suffixed():
    assert parse_size("7143424") == 7143424
    assert parse_size("6976K") == 6976 * 1024
    assert parse_size("1.50G") == int(1.5 * 1024**3)
    assert parse_size("") is None


def test_req_mem_of_older_slurm_is_per_node_or_per_cpu():
    # Before 21.08 sacct appended n or c, e.g. `1.50Gn` (SchedMD/slurm issue 115).
    assert parse_req_mem("1.50Gn", ncpus=4, nnodes=2) == 2 * int(1.5 * 1024**3)
    assert parse_req_mem("2410Mc", ncpus=4, nnodes=1) == 4 * 2410 * MB
    assert parse_req_mem("200M", ncpus=4, nnodes=2) == 200 * MB  # 22.05: the job's total


class Replay:
    def __init__(self, *answers: tuple[int, str, str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv, *, input=None, timeout=None) -> CommandResult:
        self.calls.append(tuple(argv))
        rc, out, err = self.answers.pop(0)
        return CommandResult(tuple(argv), rc, out, err)

    def close(self) -> None:
        pass


def test_client_usage_asks_sacct_once_and_keeps_only_the_ids_asked():
    transport = Replay((0, (USAGE / "usage_finished_noconvert.txt").read_text(), ""))
    usage = SlurmClient(transport).usage(["4512", "4517"])
    assert set(usage) == {"4512", "4517"}
    (argv,) = transport.calls
    assert argv[0] == "sacct" and "--jobs=4512,4517" in argv and "--noconvert" in argv


def test_client_usage_without_accounting_is_empty_and_asks_only_once():
    transport = Replay((1, "", ACCT_OFF))
    client = SlurmClient(transport)
    assert client.usage(["4512"]) == {}
    assert client.usage(["4513"]) == {}
    assert len(transport.calls) == 1


def test_client_usage_splits_thousands_of_ids_into_bounded_calls():
    transport = Replay((0, "", ""), (0, "", ""), (0, "", ""))
    SlurmClient(transport).usage([str(i) for i in range(1200)])
    assert len(transport.calls) == 3


def test_async_client_usage_is_the_same_operation():
    import asyncio

    class AsyncReplay(Replay):
        async def run(self, argv, *, input=None, timeout=None):  # type: ignore[override]
            return Replay.run(self, argv, input=input, timeout=timeout)

    transport = AsyncReplay((0, (USAGE / "usage_finished.txt").read_text(), ""))
    usage = asyncio.run(AsyncSlurmClient(transport).usage(["4515"]))
    assert usage["4515"].cpu_efficiency == pytest.approx(9.618 / 12)
