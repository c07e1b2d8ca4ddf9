"""The resource monitor: real jobs sampled from the real /proc, and the parsers on recorded
/proc files (tests/fixtures/proc)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

from airflow_jobforge.node import monitor
from airflow_jobforge.node.runner import run_batch
from airflow_jobforge.rundir import collect_results
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.rundir.samples import monitor_file, read_monitor

PROC = Path(__file__).parent.parent / "fixtures" / "proc"
MB = 1 << 20

NODE_KEYS = {
    "t",
    "kind",
    "batch",
    "host",
    "hpc_job_id",
    "cpu_pct",
    "ncpus",
    "mem_used_bytes",
    "mem_total_bytes",
    "disk_read_bps",
    "disk_write_bps",
    "net_rx_bps",
    "net_tx_bps",
}
JOB_KEYS = {
    "t",
    "kind",
    "batch",
    "job",
    "host",
    "cpu_pct",
    "rss_bytes",
    "peak_rss_bytes",
    "read_bytes",
    "write_bytes",
    "nprocs",
}

# b"\1" * n really touches every page (bytearray(n) may stay unmapped zero pages).
HOLD_60_MB = "import time; x = b'\\1' * (60 << 20); time.sleep(1.5)"
BUSY_CPU = "import time\nwhile time.process_time() < 0.6: pass"


def python_job(name: str, code: str, tmp_path: Path) -> JobSpec:
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    return JobSpec(name, f"{sys.executable} {script}")


def job_samples(samples: list[dict], name: str) -> list[dict]:
    return [s for s in samples if s["kind"] == "job" and s["job"] == name]


def test_monitor_samples_the_node_and_each_job_and_records_get_peak_rss_and_cpu_time(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    spec = BatchSpec(
        batch="b",
        jobs=(
            python_job("mem", HOLD_60_MB, tmp_path),
            python_job("busy", BUSY_CPU, tmp_path),
        ),
        monitor_interval_s=0.2,
    )
    out = tmp_path / "out"
    assert run_batch(spec, out, num_processes=2) == 0

    samples = read_monitor(out)
    node = [s for s in samples if s["kind"] == "node"]
    assert node and all(set(s) == NODE_KEYS for s in node)
    assert node[0]["hpc_job_id"] == "77" and node[0]["host"] == socket.gethostname()
    assert all(
        0 <= s["cpu_pct"] <= 100 and s["mem_used_bytes"] < s["mem_total_bytes"] for s in node
    )
    mem, busy = job_samples(samples, "mem"), job_samples(samples, "busy")
    assert mem and busy and all(set(s) == JOB_KEYS for s in mem + busy)
    assert max(s["peak_rss_bytes"] for s in mem) >= 50 * MB
    assert max(s["cpu_pct"] for s in busy) > 20
    assert all(s["batch"] == "b" and s["nprocs"] >= 1 for s in mem + busy)

    records = collect_results(out)
    assert records["mem"].max_rss_bytes >= 50 * MB
    assert records["busy"].cpu_time_s > 0.3
    assert records["mem"].host == records["busy"].host == socket.gethostname()


def test_monitor_off_writes_no_samples_and_records_still_carry_rusage(tmp_path):
    spec = BatchSpec(batch="b", jobs=(python_job("mem", HOLD_60_MB, tmp_path),))
    assert spec.monitor_interval_s == 0
    assert run_batch(spec, tmp_path / "out", 1) == 0
    assert not (tmp_path / "out" / "monitor").exists()
    record = collect_results(tmp_path / "out")["mem"]
    assert record.max_rss_bytes >= 50 * MB
    assert record.cpu_time_s is not None and record.cpu_time_s > 0
    assert record.host == socket.gethostname()


def test_a_grandchild_that_left_the_job_session_still_counts_for_its_job(tmp_path):
    """The job's child forks a grandchild that calls setsid and holds 60 MB: no longer in the
    job's session, it is found through its parent."""
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    x = b'\\1' * (60 << 20)\n"
        "    time.sleep(1.2)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
    )
    child = python_job("forks", code, tmp_path)
    # "; true": bash cannot exec python, so python is the job's child and its fork a grandchild
    job = JobSpec("forks", f"{child.command}; true")
    spec = BatchSpec(batch="b", jobs=(job,), monitor_interval_s=0.2)
    out = tmp_path / "out"
    assert run_batch(spec, out, 1) == 0
    samples = job_samples(read_monitor(out), "forks")
    assert max(s["peak_rss_bytes"] for s in samples) >= 60 * MB
    assert max(s["nprocs"] for s in samples) >= 2
    assert collect_results(out)["forks"].max_rss_bytes >= 60 * MB, "waited-for descendants"


def test_an_unwritable_monitor_dir_drops_samples_says_so_once_and_costs_no_job(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "monitor").write_text("a file where the monitor dir should be")
    spec = BatchSpec(
        batch="b",
        jobs=tuple(JobSpec(f"j{i}", "sleep 0.6") for i in range(2)),
        monitor_interval_s=0.1,
    )
    assert run_batch(spec, out, 2) == 0
    assert {r.status for r in collect_results(out).values()} == {"finished"}
    assert capsys.readouterr().err.count("resource monitor cannot write samples to") == 1


def test_a_torn_last_line_and_corrupt_lines_are_skipped_by_the_reader(tmp_path):
    first = monitor_file(tmp_path, "b1")
    first.parent.mkdir(parents=True)
    first.write_text(
        json.dumps({"t": 2.0, "kind": "node", "cpu_pct": 5.0})
        + "\nnot json\n"
        + json.dumps({"t": 4.0, "kind": "job", "job": "a"})
        + '\n{"t": 5.0, "kind": "jo'
    )
    monitor_file(tmp_path, "b2").write_text(
        json.dumps({"t": 3.0, "kind": "job", "job": "x"}) + "\n"
    )
    assert [s["t"] for s in read_monitor(tmp_path)] == [2.0, 3.0, 4.0]
    assert read_monitor(tmp_path / "no-such-run") == []


# --- parsers on recorded /proc files ---------------------------------------------------------


def fixture(name: str) -> bytes:
    return (PROC / name).read_bytes()


def test_pid_stat_is_read_after_the_last_parenthesis_of_the_command_name():
    stat = monitor.parse_pid_stat(fixture("pid_stat_odd_comm"))  # comm is "a b) c"
    assert (stat.ppid, stat.sid, stat.start, stat.zombie) == (13117, 5434, 1136119, False)
    assert stat.rss_bytes == 417 * monitor.PAGE_SIZE and stat.ticks == 0


def test_pid_cpu_ticks_include_reaped_children():
    stat = monitor.parse_pid_stat(fixture("pid_stat_python"))  # utime 2 stime 1, children 3+1
    assert stat.ticks == 7 and stat.rss_bytes == 3325 * monitor.PAGE_SIZE


def test_pid_io_gives_storage_read_and_write_bytes():
    assert monitor.parse_pid_io(fixture("pid_io")) == (143360, 5271552)


def test_node_cpu_counts_iowait_as_idle_and_guest_once():
    busy, total = monitor.parse_cpu_times(fixture("stat"))
    assert busy == 425204 + 995 + 102372 + 0 + 4581 + 171
    assert total == busy + 1722667 + 3454


def test_memory_used_is_total_minus_available():
    assert monitor.parse_meminfo(fixture("meminfo")) == (
        (24684096 - 24138508) * 1024,
        24684096 * 1024,
    )


def test_disk_bytes_count_whole_disks_only_in_512_byte_sectors():
    data = fixture("diskstats")
    names = [line.split()[2].decode() for line in data.splitlines()]
    assert [n for n in names if monitor.looks_like_whole_disk(n)] == ["vda"]
    assert monitor.parse_diskstats(data, {"vda"}) == (13998482 * 512, 11266000 * 512)


def test_partitions_and_stacked_devices_are_not_whole_disks():
    for name in ("sda1", "nvme0n1p2", "mmcblk0p1", "dm-0", "md127", "loop3", "zram0"):
        assert not monitor.looks_like_whole_disk(name), name
    for name in ("sda", "nvme0n1", "mmcblk0", "vdb", "xvda"):
        assert monitor.looks_like_whole_disk(name), name


def test_network_bytes_leave_out_loopback():
    assert monitor.parse_net_dev(fixture("net_dev")) == (742624022, 1418046)
