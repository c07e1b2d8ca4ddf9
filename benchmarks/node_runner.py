"""The node runner against the cost of starting the jobs at all, side by side in one run.

N `true` jobs through `python -m airflow_jobforge.node run-batch` (what a node runs: Python
start-up, the batch file, a record and two output files per job) against
`seq N | xargs -P P -I{} bash -c true`, best of 3 each, and their ratio; goal: within 1.3x.
At 2 processes with 2,000 jobs always, and at 16 processes with 20,000 jobs on a machine
with 16 CPUs or more. A third column runs xargs with each job's bash opening its two output
files (`exec >J.out 2>J.err`): the part of the gap that is the file system's, not the runner's.
Then the old figure: 1,000 jobs, 2 processes (goal < 5 s).

Wall time is the goal, but on a shared 2-core machine a neighbour's load moves it by 2x; the
CPU time of each whole process tree (its wait4 rusage: the runner or xargs and every job) is
steadier, so it is printed too, with the runner's extra CPU per job over xargs'.

The runs alternate (xargs, xargs with files, runner) so a neighbour's load hits all three
alike; the spread (best-worst) is printed. Output dirs are deleted only at the end: on an
ext4 without a journal, creating a file scans past every inode deleted in the last minutes,
so deleting 4,000 output files between runs makes the next run's file creation 30x slower,
and other programs' deletions do the same: the cost of creating a file where the runs write
is printed first (`--dir` picks the place; default: the system's temporary dir).

A fourth column runs the same batch as a batch that shares work (the default since work
sharing): the runner claims each chunk of its jobs before it starts the first (an mkdir and
a small file per chunk); goal: within 5 % of the runner without.

`--baseline-tree DIR` adds a fourth column in the same rounds: the runner of another source
tree (a `git worktree` of an earlier commit), so a change to the runner is measured before
and after in one run, under the same load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airflow_jobforge.planning.planner import CLAIM_CHUNK_MAX
from airflow_jobforge.rundir import collect_results
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec

GOAL = 1.3
ROUNDS = 3


def measured(argv: list[str], stdin: bytes = b"") -> tuple[float, float]:
    """(wall s, CPU s of the whole process tree) of one command."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, argv
    return wall, usage.ru_utime + usage.ru_stime


def xargs(n: int, processes: int, command: list[str]) -> tuple[float, float]:
    lines = "".join(f"{i}\n" for i in range(n)).encode()
    return measured(["xargs", "-P", str(processes), "-I{}", *command], lines)


def runner(
    batch_file: Path, out: Path, processes: int, tree: Path | None = None
) -> tuple[float, float]:
    """The node runner of this checkout, or of the source `tree` (put first on the path)."""
    argv = [sys.executable, "-m", "airflow_jobforge.node", "run-batch", str(batch_file)]
    argv += ["--output", str(out), "--num-processes", str(processes), "--monitor-interval", "0"]
    if tree is not None:
        code = f"import sys, runpy; sys.path.insert(0, {str(tree)!r}); "
        code += "runpy.run_module('airflow_jobforge.node', run_name='__main__')"
        argv[1:3] = ["-c", code]
    return measured(argv)


def check(out: Path, n: int) -> None:
    """The figure counts only if every job left a successful record and its two files."""
    records = collect_results(out)
    assert len(records) == n and all(r.succeeded for r in records.values()), out
    assert len(os.listdir(out / "job-output")) == 2 * n, out


def spread(times: list[float]) -> str:
    return f"{min(times):.2f} s ({min(times):.2f}-{max(times):.2f})"


def true_jobs(root: Path, n: int, share_with: int | None = None) -> Path:
    """The batch file of `n` true jobs; with `share_with` (processes), as the planner writes
    a batch that shares work (the default): its chunks claimed as the runner starts them."""
    jobs = tuple(JobSpec(f"j{i}", "true") for i in range(n))
    if share_with is None:
        batch_file = root / f"batch-{n}.json"
        BatchSpec(batch="bench", jobs=jobs).dump(batch_file)
        return batch_file
    batch_file = root / f"batch-{n}-shared.json"
    chunk = max(1, min(CLAIM_CHUNK_MAX, n // (8 * share_with)))  # planner.claim_chunk's rule
    BatchSpec(batch="bench", jobs=jobs, group="bench", share=True, claim_chunk=chunk).dump(
        batch_file
    )
    return batch_file


def compare(root: Path, n: int, processes: int, baseline: Path | None = None) -> None:
    batch_file = true_jobs(root, n)
    shared_file = true_jobs(root, n, share_with=processes)
    runs: dict[str, list[tuple[float, float]]] = {
        "xargs": [],
        "files": [],
        "runner": [],
        "sharing": [],
    }
    if baseline is not None:
        runs["baseline"] = []
    for k in range(ROUNDS):
        files = root / f"xargs-{n}-{processes}-{k}"
        files.mkdir()
        to_files = ["bash", "-c", 'exec >"$0.out" 2>"$0.err"; true', f"{files}/j{{}}"]
        out = root / f"runner-{n}-{processes}-{k}"
        runs["xargs"].append(xargs(n, processes, ["bash", "-c", "true"]))
        runs["files"].append(xargs(n, processes, to_files))
        runs["runner"].append(runner(batch_file, out, processes))
        check(out, n)
        out = root / f"sharing-{n}-{processes}-{k}"
        runs["sharing"].append(runner(shared_file, out, processes))
        check(out, n)
        if baseline is not None:
            out = root / f"baseline-{n}-{processes}-{k}"
            runs["baseline"].append(runner(batch_file, out, processes, baseline))
            check(out, n)
    wall = {name: [w for w, _ in got] for name, got in runs.items()}
    cpu = {name: [c for _, c in got] for name, got in runs.items()}
    ratio = min(wall["runner"]) / min(wall["xargs"])
    extra_us = (min(cpu["runner"]) - min(cpu["xargs"])) / n * 1e6
    print(
        f"{n} jobs, {processes} processes, wall: xargs {spread(wall['xargs'])}, "
        f"xargs + output files {spread(wall['files'])}, runner {spread(wall['runner'])}: "
        f"ratio {ratio:.2f}x (goal {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'}; "
        f"xargs + files {min(wall['files']) / min(wall['xargs']):.2f}x), "
        f"runner {n / min(wall['runner']):,.0f} jobs/s"
    )
    print(
        f"{n} jobs, {processes} processes, CPU of the whole tree: xargs {spread(cpu['xargs'])}, "
        f"xargs + output files {spread(cpu['files'])}, runner {spread(cpu['runner'])}: "
        f"ratio {min(cpu['runner']) / min(cpu['xargs']):.2f}x, "
        f"the runner's own {extra_us:.0f} us per job"
    )
    share = min(wall["sharing"]) / min(wall["runner"])
    print(
        f"{n} jobs, {processes} processes, the runner with work sharing (its chunks claimed "
        f"as it starts them) against without: wall {spread(wall['sharing'])} vs "
        f"{spread(wall['runner'])} ({share:.3f}x, goal within 1.05x: "
        f"{'met' if share <= 1.05 else 'NOT met'}); CPU {spread(cpu['sharing'])} vs "
        f"{spread(cpu['runner'])}"
    )
    if baseline is not None:
        base_us = (min(cpu["baseline"]) - min(cpu["xargs"])) / n * 1e6
        print(
            f"{n} jobs, {processes} processes, this runner against {baseline}'s: wall "
            f"{spread(wall['runner'])} vs {spread(wall['baseline'])} "
            f"({min(wall['runner']) / min(wall['baseline']):.2f}x); own CPU per job "
            f"{extra_us:.0f} vs {base_us:.0f} us"
        )


def create_cost_us(root: Path, n: int = 1_000) -> float:
    """What creating one empty output file costs in `root` now."""
    probe = root / "probe"
    probe.mkdir()
    started = time.perf_counter()
    for i in range(n):
        os.close(os.open(probe / f"{i}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where the runs write (default: temp dir)")
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        default=None,
        help="also run the node runner of this source tree (e.g. a git worktree of an earlier "
        "commit), alternating with this one",
    )
    args = parser.parse_args()
    baseline = args.baseline_tree.resolve() if args.baseline_tree else None
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="jobforge-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        print(
            f"`true` jobs, monitor off, best of {ROUNDS} (best-worst), {cpus} CPUs; "
            f"creating a file in {root.parent}: {create_cost_us(root):.0f} us"
        )
        compare(root, 2_000, 2, baseline)
        if cpus >= 16:
            compare(root, 20_000, 16, baseline)
        else:
            print(f"20000 jobs, 16 processes: needs a machine with 16 CPUs (this one has {cpus})")
        old = []
        batch_file = true_jobs(root, 1_000)
        for k in range(ROUNDS):
            out = root / f"old-{k}"
            old.append(runner(batch_file, out, 2)[0])
            check(out, 1_000)
        print(f"1000 jobs, 2 processes: runner {spread(old)} (goal < 5 s)")


if __name__ == "__main__":
    main()
