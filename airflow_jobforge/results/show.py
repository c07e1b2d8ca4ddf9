"""What `jobforge results show` reads and reports: one row per expected job of a run, and
of a pipeline run each stage's (a heading, the stage's table) then the totals.

A run's records say what happened; they are silent about jobs whose batch never started. So
the jobs a run was meant to run come first from its manifest (`run.json`) and, without one,
from everything else that names jobs: batch files, `batch_submitted` events and the records
themselves. A job without a record is missing. Pure: files in, rows and text out, fast
enough for a 100,000-job run (one pass over the records, no per-job file access except the
stderr tails of the few failed jobs printed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.rundir.batches import BATCHES_DIR
from airflow_jobforge.rundir.events import BATCH_SUBMITTED, read_events
from airflow_jobforge.rundir.manifest import RunManifest, read_manifest
from airflow_jobforge.rundir.pipeline import (
    PipelineRunManifest,
    Stage,
    add_summaries,
    pipeline_succeeded,
    read_pipeline_manifest,
    read_stages,
    stage_heading,
    stages_line,
)
from airflow_jobforge.rundir.records import (
    ResultRecord,
    Summary,
    collect_results,
    job_state,
    results_table,
    summarize,
    tail_file,
)
from airflow_jobforge.rundir.samples import MONITOR_DIR, monitor_file, read_monitor_file

JOB_OUTPUT_DIR = "job-output"
NO_RECORD = "no result record"
STATES = ("ok", "failed", "canceled", "missing")
# Words a user may write for a state, as in JADE's counts.
STATE_ALIASES = {"successful": "ok", "succeeded": "ok", "success": "ok", "cancelled": "canceled"}


@dataclass(frozen=True)
class RunResults:
    """A run as read from its directory: expected jobs (name -> batch, None when unknown),
    the latest record of each job, and peak memory where records lack it."""

    run_dir: Path
    expected: dict[str, str | None]
    records: dict[str, ResultRecord]
    peak_rss: dict[str, int]
    manifest: RunManifest | None

    @property
    def names(self) -> list[str]:
        return list(self.expected)

    def summary(self) -> Summary:
        return summarize(self.records.values(), self.expected)

    def state(self, name: str) -> str:
        return job_state(self.records.get(name))

    def batch(self, name: str) -> str | None:
        record = self.records.get(name)
        return record.batch if record is not None else self.expected.get(name)

    def peak_rss_bytes(self, name: str) -> int | None:
        record = self.records.get(name)
        if record is not None and record.max_rss_bytes is not None:
            return record.max_rss_bytes
        return self.peak_rss.get(name)

    def stderr_path(self, name: str) -> Path:
        return self.run_dir / JOB_OUTPUT_DIR / f"{name}.err"

    def stderr_tail(self, name: str, lines: int) -> str:
        return tail_file(self.stderr_path(name), lines)


def batch_file_jobs(run_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Job -> batch from the batch files. A rerun's batch file names its jobs too; the
    original batch (the shorter name) is kept."""
    jobs: dict[str, str] = {}
    paths = sorted(
        (Path(run_dir) / BATCHES_DIR).glob("*.json"), key=lambda p: (len(p.stem), p.stem)
    )
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            batch = str(data.get("batch") or path.stem)
            for job in data.get("jobs") or ():
                jobs.setdefault(str(job["name"]), batch)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue  # a batch file being written, or not ours
    return jobs


def submitted_jobs(run_dir: str | os.PathLike[str]) -> dict[str, str | None]:
    """Job -> batch from `batch_submitted` events (`data["jobs"]`)."""
    jobs: dict[str, str | None] = {}
    for event in read_events(run_dir):
        if event.type != BATCH_SUBMITTED or not isinstance(event.data, dict):
            continue
        names = event.data.get("jobs")
        if isinstance(names, list):
            for name in names:
                jobs.setdefault(str(name), event.batch)
    return jobs


def expected_jobs(
    run_dir: str | os.PathLike[str],
    records: Mapping[str, ResultRecord],
    manifest: RunManifest | None,
) -> dict[str, str | None]:
    """Every job the run was meant to run, with its batch: the manifest when there is one,
    else what batch files and submit events name; jobs that have a record always count."""
    expected: dict[str, str | None]
    if manifest is not None:
        expected = dict(manifest.jobs)
    else:
        expected = dict(batch_file_jobs(run_dir))
        for name, batch in submitted_jobs(run_dir).items():
            if expected.get(name) is None:
                expected[name] = batch
    for name, record in records.items():
        if expected.get(name) is None:
            expected[name] = record.batch
    return expected


def monitor_peaks(
    run_dir: str | os.PathLike[str], wanted: Iterable[str], batches: Iterable[str] | None = None
) -> dict[str, int]:
    """The largest `peak_rss_bytes` of each wanted job in the resource monitor's samples.

    Only the named batches' files are read when given: a 100,000-job run's samples are large,
    and records written by a current runner carry their peak already."""
    wanted = set(wanted)
    if not wanted:
        return {}
    if batches is None:
        paths = sorted((Path(run_dir) / MONITOR_DIR).glob("*.jsonl"))
    else:
        paths = [monitor_file(run_dir, b) for b in sorted(set(batches))]
    peaks: dict[str, int] = {}
    for path in paths:
        for sample in read_monitor_file(path):
            name, peak = sample.get("job"), sample.get("peak_rss_bytes")
            if (
                sample["kind"] == "job"
                and name in wanted
                and isinstance(peak, int)
                and peak > peaks.get(name, -1)
            ):
                peaks[name] = peak
    return peaks


def load_run(run_dir: str | os.PathLike[str]) -> RunResults:
    """Read a run directory (see `rundir.resolve_run_dir` for finding it)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    records = collect_results(run_dir)
    expected = expected_jobs(run_dir, records, manifest)
    lacking = [n for n in expected if (r := records.get(n)) is None or r.max_rss_bytes is None]
    batches = {b for n in lacking if (b := records[n].batch if n in records else expected[n])}
    peaks = monitor_peaks(run_dir, lacking, batches) if lacking else {}
    return RunResults(run_dir, expected, records, peaks, manifest)


def parse_states(values: Sequence[str] | None) -> tuple[str, ...]:
    """`--status failed,missing` (repeatable, comma-separated) as job states."""
    chosen: list[str] = []
    bad: list[str] = []
    for value in values or ():
        for word in filter(None, (w.strip().lower() for w in value.split(","))):
            state = STATE_ALIASES.get(word, word)
            if state in STATES:
                chosen.append(state)
            else:
                bad.append(word)
    if bad:
        raise JobForgeError(
            f"unknown status {', '.join(map(repr, bad))}; choose from {', '.join(STATES)}"
        )
    return tuple(dict.fromkeys(chosen))


def select(run: RunResults, states: Sequence[str]) -> list[str]:
    """The run's jobs in the given states (all jobs when none are given), in run order."""
    if not states:
        return run.names
    wanted = set(states)
    return [n for n in run.names if run.state(n) in wanted]


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def show_table(
    run: RunResults,
    names: Sequence[str],
    *,
    max_rows: int | None = 40,
    max_tails: int = 5,
    tail_lines: int = 5,
) -> str:
    """The terminal table: `results_table` with batch, SLURM job, host and peak memory."""

    def field(attr: str):
        def cell(name: str) -> str:
            record = run.records.get(name)
            return str(getattr(record, attr) or "") if record is not None else ""

        return cell

    return results_table(
        names,
        run.records,
        stderr_tail=lambda name: run.stderr_tail(name, tail_lines),
        max_rows=max_rows,
        max_tails=max_tails,
        columns=(
            ("batch", lambda name: run.batch(name) or ""),
            ("slurm_job", field("hpc_job_id")),
            ("host", field("host")),
            ("peak_mem", lambda name: human_bytes(run.peak_rss_bytes(name))),
            ("spark", lambda name: spark_cell(run.records.get(name))),
        ),
    )


def spark_cell(record: ResultRecord | None) -> str:
    """The Spark applications a job ran, short enough for a table row: the first id and how
    many more (`--json` and `jobforge stats` give them all). Empty for other jobs, so the
    column only shows in runs with Spark."""
    apps = record.spark_apps if record is not None else None
    if not apps:
        return ""
    return apps[0] if len(apps) == 1 else f"{apps[0]} (+{len(apps) - 1})"


def job_row(run: RunResults, name: str) -> dict[str, Any]:
    """Everything known of one job, for `--json`."""
    record = run.records.get(name)
    row: dict[str, Any] = {"name": name, "state": run.state(name)}
    if record is None:
        row.update(status="missing", batch=run.batch(name), reason=NO_RECORD)
    else:
        row.update(
            status=record.status,
            return_code=record.return_code,
            exec_time_s=record.exec_time_s,
            start=record.start,
            end=record.end,
            batch=record.batch,
            hpc_job_id=record.hpc_job_id,
            host=record.host,
            cpu_time_s=record.cpu_time_s,
            reason=record.reason,
            spark_apps=record.spark_apps,
        )
    row["peak_rss_bytes"] = run.peak_rss_bytes(name)
    return row


def show_json(
    run: RunResults, names: Sequence[str], *, max_tails: int = 5, tail_lines: int = 5
) -> dict[str, Any]:
    """One JSON document: the run's counts and every selected job; the first `max_tails`
    failed jobs carry their stderr tail (reading 10,000 tails would take minutes on NFS)."""
    summary = run.summary()
    jobs = []
    tails = 0
    for name in names:
        row = job_row(run, name)
        if row["state"] == "failed" and tails < max_tails:
            tails += 1
            row["stderr_tail"] = run.stderr_tail(name, tail_lines)
        jobs.append(row)
    return {
        "run_dir": str(run.run_dir.resolve()),
        "run_id": run.manifest.run_id if run.manifest else None,
        "dag_id": run.manifest.dag_id if run.manifest else None,
        "counts": counts(summary),
        "all_succeeded": all_succeeded(summary),
        "jobs": jobs,
    }


def all_succeeded(summary: Summary) -> bool:
    """The exit code's question. A run that knows of no job did not succeed."""
    return summary.total > 0 and summary.successful == summary.total


@dataclass(frozen=True)
class TableOptions:
    """How much of a run the terminal view lists (`results show`'s options)."""

    states: tuple[str, ...] = ()
    max_rows: int | None = 40
    max_tails: int = 5
    tail_lines: int = 5


def run_text(run: RunResults, options: TableOptions, *, summary_line: bool = True) -> str:
    """`results show` of one run: its dir, the table of its selected jobs, its counts."""
    names = select(run, options.states)
    out = [f"Run: {run.run_dir}"]
    if names:
        out.append(
            show_table(
                run,
                names,
                max_rows=options.max_rows,
                max_tails=options.max_tails,
                tail_lines=options.tail_lines,
            )
        )
        if options.max_rows is not None and len(names) > options.max_rows:
            out.append("(--all lists every job; --json gives everything)")
    elif options.states:
        out.append(f"No job is {' or '.join(options.states)}")
    if summary_line:
        summary = run.summary()
        out.append(f"\n{summary if summary.total else 'No job found in this run'}")
    return "\n".join(out)


@dataclass(frozen=True)
class StageResults:
    """A stage and, once it left a run dir, what it holds."""

    stage: Stage
    run: RunResults | None

    def summary(self) -> Summary | None:
        return self.run.summary() if self.run is not None else None


@dataclass(frozen=True)
class PipelineResults:
    run_dir: Path
    manifest: PipelineRunManifest
    stages: list[StageResults]

    def summaries(self) -> list[Summary]:
        return [s for stage in self.stages if (s := stage.summary()) is not None]

    def totals(self) -> Summary:
        return add_summaries(self.summaries())

    def succeeded(self) -> bool:
        """The exit code's question: every stage succeeded, and every job of each."""
        return pipeline_succeeded([s.stage for s in self.stages], self.summaries())

    def totals_line(self) -> str:
        return f"total: {stages_line([s.stage for s in self.stages])}; {self.totals()}"


def load_pipeline(run_dir: str | os.PathLike[str]) -> PipelineResults:
    """Read a pipeline run dir: every stage in order, the run of each that left one."""
    run_dir = Path(run_dir)
    manifest = read_pipeline_manifest(run_dir)
    if manifest is None:
        raise JobForgeError("no readable pipeline.json: not a pipeline run dir", file=str(run_dir))
    stages = [
        StageResults(stage, load_run(stage.dir) if stage.started else None)
        for stage in read_stages(run_dir, manifest)
    ]
    return PipelineResults(run_dir, manifest, stages)


def pipeline_text(pipeline: PipelineResults, options: TableOptions) -> str:
    """Each stage: its heading, then the table of its run; at the end the totals."""
    out = [f"Pipeline: {pipeline.run_dir}"]
    for stage in pipeline.stages:
        out += ["", stage_heading(stage.stage, stage.summary())]
        if stage.run is not None:
            out.append(run_text(stage.run, options, summary_line=False))
    out += ["", pipeline.totals_line()]
    return "\n".join(out)


def pipeline_json(pipeline: PipelineResults, options: TableOptions) -> dict[str, Any]:
    """Per stage its entry, state and `show_json` document (None before it left a run
    dir); the totals over all stages."""
    stages = []
    for stage in pipeline.stages:
        entry = stage.stage.entry
        document = None
        if stage.run is not None:
            document = show_json(
                stage.run,
                select(stage.run, options.states),
                max_tails=options.max_tails,
                tail_lines=options.tail_lines,
            )
        stages.append(
            {
                "name": entry.name,
                "number": entry.number,
                "kind": entry.kind,
                "config_file": entry.config_file,
                "command": entry.command,
                "state": stage.stage.state,
                "reason": stage.stage.reason,
                "results": document,
            }
        )
    totals = pipeline.totals()
    return {
        "pipeline_dir": str(pipeline.run_dir.resolve()),
        "run_id": pipeline.manifest.run_id,
        "dag_id": pipeline.manifest.dag_id,
        "stages": stages,
        "counts": counts(totals),
        "all_succeeded": pipeline.succeeded(),
    }


def counts(summary: Summary) -> dict[str, int]:
    return {
        "total": summary.total,
        "successful": summary.successful,
        "failed": summary.failed,
        "canceled": summary.canceled,
        "missing": summary.missing,
    }
