"""What the results page shows, read from a run directory: plain, JSON-able data.

Pure (no Airflow import), so it is tested on real run directories without an api-server; the
plugin's routes only find the run directory (XCom) and hand it here.

Which jobs a run had comes from its manifest (`run.json`) when the summary wrote one; before
that (a run still going, or a summary that never ran) from the batch files the batches wrote
when they started, plus the batches the submit tasks sent (their XCom carries each batch's
spec), plus whatever left a record. A job known only from there and without a record is
missing, as in `summarize`: none is lost because its batch never started.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_jobforge.config.fields import check_job_name
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.planning.selection import DEFAULT_RERUN, rerun_kinds
from airflow_jobforge.rundir import ResultRecord, collect_results, job_state, summarize, tail_file
from airflow_jobforge.rundir.batches import BATCHES_DIR
from airflow_jobforge.rundir.manifest import read_manifest

JOB_OUTPUT_DIR = "job-output"
REPORT = "report.html"
STREAMS = ("out", "err")
RERUN_KEYS = ("rerun_of", "rerun")
SUMMARY_TASK = "summary"
RUN_DIR_KEY = "run_dir"
# Submit tasks sit at the DAG's top level or in a group: `submit_0000`, `short.submit_0000`.
_SUBMIT_TASK = re.compile(r"(?:^|\.)submit_\d+$")
_DIGITS = re.compile(r"(\d+)")


def check_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    """The run dir, when this process can read it; else why not, in words a user acts on.

    The api-server reads it on its own file system: a run on a cluster whose output dir is
    not shared with (or mounted on) the api-server host has nothing to show here."""
    path = Path(run_dir)
    if not path.exists():
        raise JobForgeError(
            f"the run directory {path} does not exist on the Airflow API server's host "
            "(it is on the cluster; share or mount it here to see the results)"
        )
    if not path.is_dir() or not os.access(path, os.R_OK | os.X_OK):
        raise JobForgeError(f"the run directory {path} is not readable by the Airflow API server")
    return path


def batch_jobs(run_dir: str | os.PathLike[str]) -> dict[str, str]:
    """job -> batch, from the batch files the run's batches wrote when they started.

    A cleared job's rerun writes a batch file of its own (`<batch>-rerun<n>-...`): those
    sort after their original, whose name the job keeps."""
    jobs: dict[str, str] = {}
    for path in sorted((Path(run_dir) / BATCHES_DIR).glob("*.json")):
        for name in _spec_job_names(_read_json(path)):
            jobs.setdefault(name, path.stem)
    return jobs


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _spec_job_names(spec: Any) -> list[str]:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("jobs"), list):
        return []
    return [j["name"] for j in spec["jobs"] if isinstance(j, Mapping) and "name" in j]


def expected_jobs(
    run_dir: str | os.PathLike[str], submitted: Mapping[str, str] | None = None
) -> tuple[dict[str, str], bool]:
    """(job -> batch, whether a manifest said so): the manifest, else batch files and the
    submit tasks' batches."""
    manifest = read_manifest(run_dir)
    if manifest is not None:
        return dict(manifest.jobs), True
    jobs = batch_jobs(run_dir)
    for name, batch in (submitted or {}).items():
        jobs.setdefault(name, batch)
    return jobs, False


def natural(name: str) -> list[Any]:
    """Sort key: digit runs compare as numbers (job_2 < job_10)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(name)]


def job_row(name: str, batch: str | None, record: ResultRecord | None) -> dict[str, Any]:
    """One line of the job table. A job without a record says so in `reason`."""
    if record is None:
        return {
            "name": name,
            "status": job_state(None),
            "batch": batch,
            "return_code": None,
            "exec_time_s": None,
            "start": None,
            "end": None,
            "hpc_job_id": None,
            "host": None,
            "max_rss_bytes": None,
            "cpu_time_s": None,
            "reason": "no result record",
        }
    return {
        "name": name,
        "status": job_state(record),
        "batch": record.batch,
        "return_code": record.return_code,
        # A job that never started (canceled) has no run time to show.
        "exec_time_s": record.exec_time_s if record.start else None,
        "start": record.start,
        "end": record.end,
        "hpc_job_id": record.hpc_job_id,
        "host": record.host,
        "max_rss_bytes": record.max_rss_bytes,
        "cpu_time_s": record.cpu_time_s,
        "reason": record.reason,
    }


def run_results(
    run_dir: str | os.PathLike[str], submitted: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The page's data for one run: every job's row, JADE's counts, whether a report exists.

    `submitted` (job -> batch) adds the jobs of batches that were sent to the cluster, for a
    run without a manifest. Rows are in natural name order (sim_2 before sim_10): the same
    for a run with or without a manifest."""
    path = check_run_dir(run_dir)
    records = collect_results(path)
    jobs, from_manifest = expected_jobs(path, submitted)
    for name, record in records.items():
        jobs.setdefault(name, record.batch)
    summary = summarize(records.values(), jobs)
    return {
        "run_dir": str(path),
        "manifest": from_manifest,
        "jobs": [
            job_row(name, jobs[name], records.get(name)) for name in sorted(jobs, key=natural)
        ],
        "counts": {
            "total": summary.total,
            "ok": summary.successful,
            "failed": summary.failed,
            "canceled": summary.canceled,
            "missing": summary.missing,
        },
        "report": (path / REPORT).is_file(),
    }


def check_output_request(job: str, stream: str) -> None:
    """A job name as the config checks it (no `/`, not `.` or `..`, no leading dot) and a
    known stream: a request cannot name a file outside `<run>/job-output/`."""
    try:
        check_job_name(job)
    except ValueError as exc:
        raise JobForgeError(str(exc)) from None
    if stream not in STREAMS:
        raise JobForgeError(f"{stream!r} is no output stream: use one of {', '.join(STREAMS)}")


def job_output_path(run_dir: str | os.PathLike[str], job: str, stream: str) -> Path:
    """`<run>/job-output/<job>.out|.err`, for a checked request only."""
    check_output_request(job, stream)
    return Path(run_dir) / JOB_OUTPUT_DIR / f"{job}.{stream}"


def job_output(
    run_dir: str | os.PathLike[str], job: str, stream: str, lines: int = 40
) -> dict[str, Any]:
    """The last `lines` lines of a job's stdout or stderr (reads only the file's end)."""
    path = job_output_path(check_run_dir(run_dir), job, stream)
    return {
        "job": job,
        "stream": stream,
        "path": str(path),
        "exists": path.is_file(),
        "text": tail_file(path, lines=lines),
    }


def report_file(run_dir: str | os.PathLike[str]) -> Path | None:
    path = check_run_dir(run_dir) / REPORT
    return path if path.is_file() else None


def find_run_dir(
    entries: Iterable[tuple[str, str, Any]],
) -> tuple[str | None, dict[str, str]]:
    """(run dir, job -> batch of the submitted batches) from a DAG run's XCom entries
    (task id, key, deserialized value).

    The summary's `run_dir` wins; else the `output_dir` of any submit task's request: every
    submit task of a run writes under the same run dir."""
    run_dir: str | None = None
    from_summary: str | None = None
    submitted: dict[str, str] = {}
    for task_id, key, value in entries:
        if task_id == SUMMARY_TASK and key == RUN_DIR_KEY and isinstance(value, str) and value:
            from_summary = value
        if key != "return_value" or not _SUBMIT_TASK.search(task_id):
            continue
        request = value.get("request") if isinstance(value, Mapping) else None
        if not isinstance(request, Mapping):
            continue
        if run_dir is None and isinstance(request.get("output_dir"), str):
            run_dir = request["output_dir"]
        batch = request.get("batch")
        if isinstance(batch, Mapping):
            for name in _spec_job_names(batch):
                submitted.setdefault(name, str(batch.get("batch", "")))
    return from_summary or run_dir, submitted


def rerun_conf(
    run_id: str,
    original: Mapping[str, Any] | None = None,
    rerun: Sequence[str] = DEFAULT_RERUN,
) -> dict[str, Any]:
    """The conf of a run that re-runs `run_id`'s jobs with the `rerun` outcomes (the DAG's
    `rerun_of` and `rerun` params; checked as the tasks check them).

    The earlier run's other params (job selection, partition or walltime overrides) carry
    over: a resubmit runs the failed jobs the way they were asked for. Its own `rerun_of`
    does not: a rerun of a rerun names the run it repairs."""
    wanted = list(dict.fromkeys(rerun_kinds(rerun)))
    conf = {k: v for k, v in (original or {}).items() if k not in RERUN_KEYS}
    return {**conf, "rerun_of": run_id, "rerun": wanted}
