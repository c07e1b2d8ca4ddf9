"""Prints how close a sweep-like workload gets to its lower bound on the real test cluster,
with static batching (a batch owns its jobs from submission to the end, JADE's model) and
with work sharing between the batches (`batching.work_sharing`), side by side in one run.

The workload: N sleep jobs whose durations grow along the config (a sweep over problem size),
total work W seconds; batches of B jobs, P processes each, at most A allocations of the group
at a time (`max_concurrent_batches`): capacity = A x P slots, so the machine's 2 cores do not
distort it (sleeps use none). The lower bound of the makespan is max(W / slots, the longest
job). The run goes through real Airflow (`jobforge run`, backend slurm); the makespan is
measured on the nodes, from the first batch's runner start to the last job's end (the
runners' `batch_started` events and the records), so Airflow's own start does not count.

Printed beside the real runs, clearly marked: the same durations list-scheduled on the same
slots (whoever has a free slot takes the next job) with no overhead at all.

  python benchmarks/packing.py [--jobs 240] [--work 240] [--batch 60] [--processes 2]
                               [--allocations 2] [--partition debug] [--only static|sharing]
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_jobforge.embedded.run import run_config  # noqa: E402
from airflow_jobforge.results.slots import slot_totals, slot_use  # noqa: E402
from airflow_jobforge.rundir import collect_results  # noqa: E402
from airflow_jobforge.rundir.events import read_events  # noqa: E402


def sweep(jobs: int, work: float) -> list[float]:
    """Durations growing linearly along the config, from 0.2x to 1.8x the mean."""
    mean = work / jobs
    return [round(mean * (0.2 + 1.6 * i / max(1, jobs - 1)), 3) for i in range(jobs)]


def list_schedule(durations: list[float], slots: int) -> float:
    """Makespan when each job goes to the first free slot, in config order."""
    free = [0.0] * slots
    for d in durations:
        heapq.heapreplace(free, free[0] + d)
    return max(free)


def write_config(path: Path, durations: list[float], args: argparse.Namespace, share: bool) -> None:
    path.write_text(
        json.dumps(
            {
                "jobs": [
                    {"name": f"s{i:04d}", "command": f"sleep {d}", "estimated_run_minutes": d / 60}
                    for i, d in enumerate(durations)
                ],
                "submission_groups": [
                    {
                        "name": "sweep",
                        "slurm": {"partition": args.partition, "walltime": "30"},
                        "batching": {
                            "per_node_batch_size": args.batch,
                            "num_processes": args.processes,
                            "work_sharing": share,
                        },
                        "max_concurrent_batches": args.allocations,
                        "monitor": {"interval_s": 0},
                    }
                ],
            }
        )
    )


def one_run(base: Path, name: str, durations: list[float], args, bound: float) -> float:
    config = base / f"{name}.json"
    write_config(config, durations, args, share=name == "sharing")
    state, summary, run_dir = run_config(
        str(config), backend="slurm", output=str(base / name), poll_interval=1
    )
    records = collect_results(run_dir)
    uses = slot_use(read_events(run_dir), records)
    totals = slot_totals(uses)
    others = sum(1 for r in records.values() if r.ran_in)
    print(
        f"{name:<8} {state:<8} {summary.successful:>4}/{summary.total:<4} "
        f"{totals.makespan_s:>8.1f}s {totals.makespan_s / bound:>6.2f}x "
        f"{100 * (totals.utilisation or 0):>6.1f}% {others:>8}"
    )
    for use in uses:
        print(
            f"           {use.batch}: {use.elapsed_s:6.1f} s, {use.jobs:3d} jobs run there, "
            f"utilisation {100 * (use.utilisation or 0):5.1f}%"
        )
    if state != "success" or summary.successful != summary.total:
        raise SystemExit(f"{name}: the run did not succeed: {summary}")
    return totals.makespan_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=240)
    parser.add_argument("--work", type=float, default=240.0, help="total seconds of sleep")
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--allocations", type=int, default=2)
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--only", choices=("static", "sharing"))
    args = parser.parse_args()
    durations = sweep(args.jobs, args.work)
    slots = args.processes * args.allocations
    bound = max(sum(durations) / slots, max(durations))
    base = Path(tempfile.mkdtemp(prefix="jobforge-bench-packing-"))
    print(
        f"sweep: {args.jobs} sleep jobs, {sum(durations):.0f} s of work, "
        f"{min(durations):.2f}-{max(durations):.2f} s each; batches of {args.batch}, "
        f"{args.processes} processes, {args.allocations} allocations at a time = {slots} slots; "
        f"partition {args.partition}"
    )
    print(f"lower bound (work / slots, or the longest job): {bound:.1f} s")
    print("makespan: first runner start to last job end, on the nodes")
    print(
        f"{'batching':<8} {'state':<8} {'ok/jobs':>9} {'makespan':>9} {'/bound':>7} {'busy':>7} "
        f"{'ran by another batch':>8}"
    )
    for name in ("static", "sharing"):
        if args.only in (None, name):
            one_run(base, name, durations, args, bound)
    dynamic = list_schedule(durations, slots)
    print(
        f"list scheduling (simulated, no overhead): {dynamic:.1f} s = {dynamic / bound:.2f}x "
        "the bound"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
