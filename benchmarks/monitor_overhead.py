"""Prints what the resource monitor costs: 16 jobs running ~20 s, sampled every second.

Two figures, goal < 1 % of one CPU each:
1. the sampler's own CPU time (thread time around each sample), runner in this process;
2. the whole runner process's CPU, monitor at 1 s vs off, runner as a subprocess
   (`python -m airflow_jobforge.node`): its wait4 rusage minus its jobs' CPU time from their
   records, so only the runner's own CPU is compared.
With psutil installed, the same sample done with psutil is timed for comparison, and
`--extra-processes N` starts N idle processes outside the batch (a big node has hundreds).

    .venv/bin/python benchmarks/monitor_overhead.py [--seconds 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airflow_jobforge.node.runner import BatchRunner
from airflow_jobforge.rundir import collect_results
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.rundir.samples import read_monitor

JOBS = 16
INTERVAL_S = 1.0


def batch(seconds: float) -> BatchSpec:
    # bash stays as the parent of a sleep: two processes per job, a tree to find
    command = f"sleep {seconds} & wait"
    return BatchSpec(
        batch="bench",
        jobs=tuple(JobSpec(f"j{i:02d}", command) for i in range(JOBS)),
        num_processes=JOBS,
    )


def sampler_in_process(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as out:
        runner = BatchRunner(batch(seconds), out, JOBS, monitor_interval_s=INTERVAL_S)
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        runner.run()
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        monitor = runner.monitor
        assert monitor is not None
        lines = read_monitor(out)
    own = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    per_sample = monitor.cpu_s / max(monitor.samples, 1)
    print(
        f"1. sampler CPU: {monitor.samples} samples in {wall:.1f} s, "
        f"{monitor.cpu_s * 1000:.1f} ms in all, {per_sample * 1e6:.0f} us per sample "
        f"({len(lines)} lines) -> {100 * monitor.cpu_s / wall:.3f} % of one CPU "
        f"(goal < 1 %); whole runner in-process {100 * own / wall:.3f} %"
    )


def runner_cpu(spec_file: Path, out: Path, interval: float) -> tuple[float, float]:
    """(runner's own CPU seconds, wall seconds) of one subprocess run."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_jobforge.node", "run-batch", str(spec_file)]
        + ["--output", str(out), "--monitor-interval", str(interval)]
    )
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    wall = time.perf_counter() - started
    jobs_cpu = sum(r.cpu_time_s or 0.0 for r in collect_results(out).values())
    return usage.ru_utime + usage.ru_stime - jobs_cpu, wall


def runner_on_vs_off(seconds: float, rounds: int) -> None:
    on: list[float] = []
    off: list[float] = []
    walls: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = Path(tmp) / "bench.json"
        batch(seconds).dump(spec_file)
        for i in range(rounds):
            for interval, into in ((INTERVAL_S, on), (0.0, off)):
                cpu, wall = runner_cpu(spec_file, Path(tmp) / f"out-{i}-{interval}", interval)
                into.append(cpu)
                walls.append(wall)
    wall = statistics.median(walls)
    diff = statistics.median(on) - statistics.median(off)
    print(
        f"2. runner process CPU ({rounds} rounds, median): monitor at {INTERVAL_S:g} s "
        f"{statistics.median(on) * 1000:.0f} ms, off {statistics.median(off) * 1000:.0f} ms, "
        f"in {wall:.1f} s -> monitor costs {100 * diff / wall:.3f} % of one CPU (goal < 1 %); "
        f"all on: {', '.join(f'{c * 1000:.0f}' for c in on)} ms; "
        f"all off: {', '.join(f'{c * 1000:.0f}' for c in off)} ms"
    )


def psutil_sample(job_pids: set[int]) -> int:
    """The same sample with psutil: job trees by session, their CPU/RSS/io, the node."""
    import psutil

    lines = 0
    for proc in psutil.process_iter(["ppid", "cpu_times", "memory_info"]):
        try:
            if os.getsid(proc.pid) in job_pids:
                proc.io_counters()
                lines += 1
        except (psutil.Error, OSError):
            continue
    psutil.cpu_times()
    psutil.virtual_memory()
    psutil.disk_io_counters(perdisk=True)
    psutil.net_io_counters(pernic=True)
    return lines


def psutil_comparison(seconds: float) -> None:
    try:
        import psutil
    except ImportError:
        print("3. psutil not installed: no comparison")
        return
    procs = [
        subprocess.Popen(["bash", "-c", f"sleep {seconds} & wait"], start_new_session=True)
        for _ in range(JOBS)
    ]
    try:
        time.sleep(0.5)
        pids = {p.pid for p in procs}
        samples = 20
        started = time.thread_time()
        for _ in range(samples):
            psutil_sample(pids)
        psutil_us = (time.thread_time() - started) / samples * 1e6
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
    print(
        f"3. the same sample with psutil {psutil.__version__}: {psutil_us:.0f} us per sample "
        f"-> {psutil_us / 1e6 / INTERVAL_S * 100:.3f} % of one CPU at {INTERVAL_S:g} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each job runs")
    parser.add_argument("--rounds", type=int, default=2, help="runner runs per mode")
    parser.add_argument(
        "--extra-processes", type=int, default=0, help="idle processes outside the batch"
    )
    args = parser.parse_args()
    extra = [
        subprocess.Popen(["sleep", str(args.seconds * (2 * args.rounds + 3) + 30)])
        for _ in range(args.extra_processes)
    ]
    try:
        processes = sum(1 for n in os.listdir("/proc") if n.isdigit())
        print(
            f"resource monitor overhead: {JOBS} jobs of {args.seconds:g} s at a "
            f"{INTERVAL_S:g} s interval; {os.cpu_count()} CPUs, {processes} processes on the "
            f"node before the batch ({args.extra_processes} of them idle extras)"
        )
        sampler_in_process(args.seconds)
        runner_on_vs_off(args.seconds, args.rounds)
        psutil_comparison(args.seconds)
    finally:
        for proc in extra:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
