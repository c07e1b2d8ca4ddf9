"""Run a whole configuration on this machine, batch by batch, through the node runner.

The same path a SLURM batch takes (batch file -> `python -m airflow_jobforge.node`), minus
SLURM: what `make demo` shows before the Airflow DAG exists, and what the `local` backend's
batch task does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from airflow_jobforge.config.models import JobConfiguration
from airflow_jobforge.planning.planner import batch_spec, plan_batches
from airflow_jobforge.rundir import (
    NOT_WRITABLE,
    Summary,
    collect_results,
    summarize,
    unwritable_reason,
)
from airflow_jobforge.rundir.batches import BATCHES_DIR, BatchSpec
from airflow_jobforge.rundir.manifest import RunManifest, write_manifest


def write_batch_file(spec: BatchSpec, output_dir: str | os.PathLike[str]) -> Path:
    path = Path(output_dir) / BATCHES_DIR / f"{spec.batch}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    spec.dump(path)
    return path


def run_locally(
    config: JobConfiguration,
    output_dir: str | os.PathLike[str],
    progress: Callable[[str], None] = print,
    config_file: str | os.PathLike[str] | None = None,
) -> Summary:
    """Setup command, every batch in plan order (a valid topological order), teardown.

    The run manifest comes first, so `jobforge results show` counts the jobs of batches that
    never ran, and `results resubmit` finds `config_file`."""
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_batches(config)
    manifest = RunManifest(
        jobs={job.name: plan.batch_of[job.name] for job in config.jobs},
        config_file=str(Path(config_file).resolve()) if config_file is not None else None,
    )
    try:
        write_manifest(output_dir, manifest)
    except OSError as exc:  # a full output dir: the batches say so, job by job
        progress(f"cannot write the run manifest: {exc}")
    if config.setup_command:
        subprocess.run(["bash", "-c", config.setup_command], check=True)
    by_name = config.jobs_by_name()
    try:
        for batch in plan.batches:
            path = write_batch_file(batch_spec(config, plan, batch, by_name), output_dir)
            rc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "airflow_jobforge.node",
                    "run-batch",
                    str(path),
                    "--output",
                    str(output_dir),
                ],
                check=False,
            ).returncode
            progress(f"batch {batch.name}: {len(batch.jobs)} jobs, runner exit code {rc}")
    finally:
        if config.teardown_command:
            subprocess.run(["bash", "-c", config.teardown_command], check=False)
    records = collect_results(output_dir)
    names = [j.name for j in config.jobs]
    problem = unwritable_reason(output_dir) if set(names) - set(records) else None
    return summarize(records.values(), names, f"{NOT_WRITABLE} ({problem})" if problem else None)
