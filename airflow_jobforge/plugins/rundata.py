"""What the results page shows, read from a run directory: plain, JSON-able data.

Pure (no Airflow import), so it is tested on real run directories without an api-server; the
plugin's routes only find the run directory (XCom) and hand it here.

Which jobs a run had comes from its manifest (`run.json`) when the summary wrote one; before
that (a run still going, or a summary that never ran) from the batch files the batches wrote
when they started, plus the batches the submit tasks sent (their XCom carries each batch's
spec), plus whatever left a record. A job known only from there and without a record is
missing, as in `summarize`: none is lost because its batch never started.

A pipeline run shows its stages (state, counts) and one stage's jobs at a time: its run dir
is found from any of its stage dirs (the submit tasks' and summaries' XCom name those) by
the `pipeline.json` above them, or from a `pipeline_run_dir` XCom of any task.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_jobforge.config.fields import check_job_name
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.planning.selection import DEFAULT_RERUN, rerun_kinds
from airflow_jobforge.rundir import (
    ResultRecord,
    Summary,
    collect_results,
    job_state,
    summarize,
    tail_file,
)
from airflow_jobforge.rundir.batches import BATCHES_DIR
from airflow_jobforge.rundir.manifest import read_manifest
from airflow_jobforge.rundir.pipeline import (
    FAILED,
    RUNNING,
    Stage,
    is_pipeline_run_dir,
    read_pipeline_manifest,
    read_stages,
)

JOB_OUTPUT_DIR = "job-output"
REPORT = "report.html"
STREAMS = ("out", "err")
RERUN_KEYS = ("rerun_of", "rerun")
SUMMARY_TASK = "summary"
RUN_DIR_KEY = "run_dir"
PIPELINE_RUN_DIR_KEY = "pipeline_run_dir"
# The run's summary, a pipeline stage's (`simulate.summary`), the pipeline's own.
_SUMMARY_TASK = re.compile(r"(?:^|\.)(?:pipeline_)?summary$")
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
        "counts": run_counts(summary),
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


@dataclass(frozen=True)
class RunLocation:
    """Where a DAG run's XCom says its results are. `submitted`: job -> batch of every
    submitted batch; `submitted_by_dir`: the same per run dir the batches wrote to (a
    pipeline's stage dirs)."""

    run_dir: str | None
    submitted: dict[str, str] = field(default_factory=dict)
    submitted_by_dir: dict[str, dict[str, str]] = field(default_factory=dict)


def find_run_location(entries: Iterable[tuple[str, str, Any]]) -> RunLocation:
    """The run dir from a DAG run's XCom entries (task id, key, deserialized value).

    A `pipeline_run_dir` of any task wins, then a summary's `run_dir`, else the
    `output_dir` of any submit task's request: every submit task of a run writes under the
    same run dir (of a pipeline: under a stage dir of the same pipeline run dir)."""
    run_dir: str | None = None
    from_summary: str | None = None
    pipeline: str | None = None
    by_dir: dict[str, dict[str, str]] = {}
    submitted: dict[str, str] = {}
    for task_id, key, value in entries:
        if isinstance(value, str) and value:
            if key == PIPELINE_RUN_DIR_KEY:
                pipeline = value
            elif key == RUN_DIR_KEY and _SUMMARY_TASK.search(task_id):
                from_summary = value
        if key != "return_value" or not _SUBMIT_TASK.search(task_id):
            continue
        request = value.get("request") if isinstance(value, Mapping) else None
        if not isinstance(request, Mapping):
            continue
        output_dir = request.get("output_dir")
        if not isinstance(output_dir, str):
            continue
        if run_dir is None:
            run_dir = output_dir
        batch = request.get("batch")
        if isinstance(batch, Mapping):
            mine = by_dir.setdefault(os.path.normpath(output_dir), {})
            for name in _spec_job_names(batch):
                submitted.setdefault(name, str(batch.get("batch", "")))
                mine.setdefault(name, str(batch.get("batch", "")))
    return RunLocation(pipeline or from_summary or run_dir, submitted, by_dir)


def find_run_dir(
    entries: Iterable[tuple[str, str, Any]],
) -> tuple[str | None, dict[str, str]]:
    """(run dir, job -> batch of the submitted batches): `find_run_location` in short."""
    location = find_run_location(entries)
    return location.run_dir, location.submitted


def pipeline_dir_of(run_dir: str | os.PathLike[str]) -> Path | None:
    """The pipeline run dir `run_dir` is, or is a stage dir of; None for a plain run."""
    path = Path(run_dir)
    if is_pipeline_run_dir(path):
        return path
    manifest = read_pipeline_manifest(path.parent)
    if manifest is not None and manifest.stage(path.name) is not None:
        return path.parent
    return None


def run_counts(summary: Summary) -> dict[str, int]:
    return {
        "total": summary.total,
        "ok": summary.successful,
        "failed": summary.failed,
        "canceled": summary.canceled,
        "missing": summary.missing,
    }


def _stage_counts(stage: Stage, submitted: Mapping[str, str] | None) -> dict[str, int] | None:
    """A stage's counts alone (its rows are built only for the stage shown)."""
    if not stage.started and not submitted:
        return None
    records = collect_results(stage.dir)
    jobs, _ = expected_jobs(stage.dir, submitted)
    for name, record in records.items():
        jobs.setdefault(name, record.batch)
    return run_counts(summarize(records.values(), jobs))


def default_stage(stages: Sequence[Stage]) -> Stage:
    """The stage a user looks at first: the first failed, else the one running, else the
    last that started, else the first."""
    for wanted in (FAILED, RUNNING):
        found = next((s for s in stages if s.state == wanted), None)
        if found is not None:
            return found
    started = [s for s in stages if s.started]
    return started[-1] if started else stages[0]


def chosen_stage(pipeline_dir: Path, name: str | None) -> Stage:
    """The stage `name` of the pipeline (None: `default_stage`); a name it has not is an
    error, so a request names no other directory."""
    stages = read_stages(pipeline_dir)
    if not stages:
        raise JobForgeError("the pipeline has no stages", file=str(pipeline_dir))
    if name is None:
        return default_stage(stages)
    found = next((s for s in stages if s.name == name), None)
    if found is None:
        raise JobForgeError(
            f"no stage {name!r} in this pipeline; its stages: " + ", ".join(s.name for s in stages)
        )
    return found


def results_dir(run_dir: str | os.PathLike[str], stage: str | None = None) -> Path:
    """Where a job's output and a report are read: the run dir, or of a pipeline run the
    chosen stage's dir."""
    path = check_run_dir(pipeline_dir_of(run_dir) or run_dir)
    if not is_pipeline_run_dir(path):
        return path
    return chosen_stage(path, stage).dir


def pipeline_results(
    pipeline_dir: str | os.PathLike[str],
    stage: str | None = None,
    submitted_by_dir: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """The page's data for a pipeline run: `run_results` of the chosen stage (None: the
    `default_stage`), and under `pipeline` every stage with its state and counts."""
    path = check_run_dir(pipeline_dir)
    manifest = read_pipeline_manifest(path)
    stages = read_stages(path, manifest)
    chosen = chosen_stage(path, stage)
    by_dir = {os.path.normpath(k): v for k, v in (submitted_by_dir or {}).items()}
    shown: dict[str, Any] | None = None
    rows = []
    totals = dict.fromkeys(("total", "ok", "failed", "canceled", "missing"), 0)
    for one in stages:
        submitted = by_dir.get(os.path.normpath(one.dir))
        if one.name == chosen.name and (one.started or submitted):
            shown = run_results(one.dir, submitted)
            counts = shown["counts"]
        else:
            counts = _stage_counts(one, submitted)
        for key, value in (counts or {}).items():
            totals[key] += value
        entry = one.entry
        rows.append(
            {
                "name": entry.name,
                "number": entry.number,
                "kind": entry.kind,
                "describe": entry.describe(),
                "on_failure": entry.on_failure,
                "state": one.state,
                "reason": one.reason,
                "run_dir": str(one.dir),
                "counts": counts,
                "report": (one.dir / REPORT).is_file(),
            }
        )
    if shown is None:  # a stage not started (or still generating its config): no jobs yet
        shown = {
            "run_dir": str(chosen.dir),
            "manifest": False,
            "jobs": [],
            "counts": dict.fromkeys(totals, 0),
            "report": False,
        }
    return {
        **shown,
        "stage": chosen.name,
        "pipeline": {
            "run_dir": str(path),
            "pipeline_file": manifest.pipeline_file if manifest else None,
            "stages": rows,
            "counts": totals,
            "report": (path / REPORT).is_file(),
        },
    }


def page_data(location: RunLocation, stage: str | None = None) -> dict[str, Any]:
    """What `/data` serves: a plain run's `run_results`, or a pipeline's `pipeline_results`
    (`pipeline` set, `stage` the one shown)."""
    if location.run_dir is None:
        raise JobForgeError("no run directory is known for this run yet")
    pipeline = pipeline_dir_of(location.run_dir)
    if pipeline is not None:
        return pipeline_results(pipeline, stage, location.submitted_by_dir)
    return {**run_results(location.run_dir, location.submitted), "pipeline": None}


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
