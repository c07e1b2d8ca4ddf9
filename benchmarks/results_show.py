"""Prints how long `jobforge results show` takes on a 100,000-job run dir (goal: a few s).

The run dir is generated: 100 batches of 1,000 jobs, records written with ResultsWriter
(host, peak memory, CPU time as the node runner writes them), 1% failed with a stderr file,
1% without a record (missing), batch files, and a manifest. Timed as a user runs it: the
`jobforge` command in a fresh process, median of 3; the no-manifest path too.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airflow_jobforge.rundir import ResultRecord, ResultsWriter, results_file
from airflow_jobforge.rundir.manifest import MANIFEST, RunManifest, write_manifest

JOBS = 100_000
BATCHES = 100


def make_run(run_dir: Path) -> None:
    per_batch = JOBS // BATCHES
    manifest: dict[str, str] = {}
    (run_dir / "batches").mkdir(parents=True)
    (run_dir / "job-output").mkdir()
    now = time.time()
    for b in range(BATCHES):
        batch = f"g-{b:04d}"
        names = [f"job_{b * per_batch + i:06d}" for i in range(per_batch)]
        spec = {"batch": batch, "jobs": [{"name": n, "command": f"run {n}"} for n in names]}
        (run_dir / "batches" / f"{batch}.json").write_text(json.dumps(spec))
        writer = ResultsWriter(results_file(run_dir, batch))
        for i, name in enumerate(names):
            manifest[name] = batch
            if i % 100 == 99:
                continue  # missing: no record
            failed = i % 100 == 42
            if failed:
                (run_dir / "job-output" / f"{name}.err").write_text("Traceback...\nboom\n")
            writer.append(
                ResultRecord(
                    name,
                    "finished",
                    1 if failed else 0,
                    12.5,
                    now,
                    now + 12.5,
                    batch,
                    hpc_job_id=str(1000 + b),
                    host=f"node{b % 8}",
                    max_rss_bytes=200 * 1024**2 + i,
                    cpu_time_s=11.0,
                )
            )
        writer.close()
    write_manifest(run_dir, RunManifest(jobs=manifest, run_key="0123456789ab"))


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), proc


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="jf-bench-show-") as tmp:
        run_dir = Path(tmp) / "run"
        started = time.perf_counter()
        make_run(run_dir)
        print(
            f"generated {JOBS} jobs in {BATCHES} batch files: {time.perf_counter() - started:.1f} s"
        )
        cli = [sys.executable, "-m", "airflow_jobforge.cli.main"]
        baseline, _ = timed([*cli, "--version"])
        print(f"jobforge --version (interpreter + imports): {baseline:.2f} s")
        for label, extra in (
            ("results show", []),
            ("results show --json", ["--json"]),
            ("results show --all", ["--all"]),
        ):
            seconds, proc = timed([*cli, "results", "show", str(run_dir), *extra])
            lines = proc.stdout.count("\n")
            print(f"{label}: {seconds:.2f} s (exit {proc.returncode}, {lines} lines of output)")
        last = proc.stdout.strip().splitlines()[-1]
        print(f"  summary: {last}")
        (run_dir / MANIFEST).unlink()
        seconds, proc = timed([*cli, "results", "show", str(run_dir)])
        print(f"results show without run.json (batch files): {seconds:.2f} s")
        print(f"  summary: {proc.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
