"""A run's statistics, gathered from what it left on disk: result records, the manifest, the
resource monitor's samples, the SLURM job of each batch and what sacct says it used.

Pure: sacct is asked by the caller (`SlurmClient.usage`) and handed in; what it answered is
kept in `<run>/efficiency.json`, so the stats and the report still show it when accounting
has long forgotten the jobs, or from a machine without SLURM.

Which SLURM jobs ran a batch: the records' `hpc_job_id`, and the batch's files under
`slurm/` (`jf-<run key>.<batch>.t<try>-<job id>.out|.err|.exit`): a batch killed before any
job ended (out of memory, walltime) has files but no record with its id.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_jobforge.results.slots import SlotUse, slot_totals, slot_use
from airflow_jobforge.rundir.events import read_events
from airflow_jobforge.rundir.manifest import read_manifest
from airflow_jobforge.rundir.pipeline import (
    Stage,
    add_summaries,
    read_stages,
    stage_heading,
    stages_line,
)
from airflow_jobforge.rundir.records import (
    ResultRecord,
    Summary,
    collect_results,
    job_state,
    summarize,
)
from airflow_jobforge.rundir.samples import MONITOR_DIR, read_monitor_file
from airflow_jobforge.rundir.spark import (
    ClusterInfo,
    SparkApp,
    read_cluster_infos,
    read_spark_apps,
)
from airflow_jobforge.slurm.script import JOB_NAME_PREFIX
from airflow_jobforge.slurm.usage import BatchUsage, UsageTotals, usage_totals

EFFICIENCY_FILE = "efficiency.json"
SLURM_DIR = "slurm"
_SLURM_FILE = re.compile(
    re.escape(JOB_NAME_PREFIX) + r"(?P<tag>.+?)-(?P<id>(?:local-)?\d+)\.(?:out|err|exit)"
)
_TAG = re.compile(r"[0-9a-f]{12}\.(?P<batch>.+)\.[a-z]+\d+")
LOCAL_PREFIX = "local-"


@dataclass(frozen=True)
class SlurmJob:
    """One SLURM job (one try) of a batch. `job_name` is known from its files, and tells a
    job id the controller later gave to someone else's job apart in sacct."""

    batch: str
    job_id: str
    job_name: str | None = None

    @property
    def accountable(self) -> bool:
        """sacct knows it: a SLURM id, not a local backend's `local-<pid>`."""
        return self.job_id.isdigit()


@dataclass
class NodeSeries:
    """A batch's node samples on one host, in time order."""

    batch: str
    host: str
    t: list[float] = field(default_factory=list)
    cpu_pct: list[float] = field(default_factory=list)
    mem_used_bytes: list[int] = field(default_factory=list)
    mem_total_bytes: int | None = None


@dataclass
class RunStats:
    run_dir: Path
    records: dict[str, ResultRecord]
    summary: Summary
    slurm_jobs: list[SlurmJob]
    usage: dict[str, BatchUsage]
    node_series: list[NodeSeries]
    # Per job, from the monitor: the highest sampled RSS (for jobs whose record has none).
    monitor_peaks: dict[str, int]
    # What batches that started a Spark cluster left under spark/ (empty for other runs).
    spark_apps: list[SparkApp] = field(default_factory=list)
    spark_clusters: list[ClusterInfo] = field(default_factory=list)
    # How busy each batch kept its slots (results.slots), from the runners' start events.
    slot_use: list[SlotUse] = field(default_factory=list)

    @property
    def totals(self) -> UsageTotals:
        return usage_totals(self.usage[j.job_id] for j in self.slurm_jobs if j.job_id in self.usage)

    def peak_rss(self, name: str) -> int | None:
        record = self.records.get(name)
        if record is not None and record.max_rss_bytes is not None:
            return record.max_rss_bytes
        return self.monitor_peaks.get(name)

    def ran(self) -> list[ResultRecord]:
        """Records of jobs that ran (a start time): canceled jobs never did."""
        return [r for r in self.records.values() if r.start is not None]


def slurm_jobs(
    run_dir: str | os.PathLike[str], records: Mapping[str, ResultRecord]
) -> list[SlurmJob]:
    """Every SLURM job of the run, by batch then job id (numeric ids in submission order)."""
    found: dict[str, SlurmJob] = {}
    slurm_dir = Path(run_dir) / SLURM_DIR
    if slurm_dir.is_dir():
        for path in slurm_dir.iterdir():
            match = _SLURM_FILE.fullmatch(path.name)
            if not match:
                continue
            tag = match.group("tag")
            batch = _TAG.fullmatch(tag)
            job_id = match.group("id")
            found[job_id] = SlurmJob(
                batch.group("batch") if batch else tag, job_id, f"{JOB_NAME_PREFIX}{tag}"
            )
    for record in records.values():
        job_id = record.hpc_job_id
        if job_id and job_id not in found:
            found[job_id] = SlurmJob(record.batch, job_id)
        elif job_id and record.batch != found[job_id].batch:
            # A tag that is not ours says no batch: the records know it.
            found[job_id] = SlurmJob(record.batch, job_id, found[job_id].job_name)

    def order(job: SlurmJob) -> tuple[str, int, str]:
        digits = job.job_id.removeprefix(LOCAL_PREFIX)
        return (job.batch, int(digits) if digits.isdigit() else 0, job.job_id)

    return sorted(found.values(), key=order)


def accountable_ids(jobs: list[SlurmJob]) -> list[str]:
    return [j.job_id for j in jobs if j.accountable]


def efficiency_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / EFFICIENCY_FILE


def read_efficiency(run_dir: str | os.PathLike[str]) -> dict[str, BatchUsage]:
    """What an earlier `stats` (or the summary task) fetched from sacct; {} if nothing."""
    try:
        data = json.loads(efficiency_path(run_dir).read_text(encoding="utf-8"))
        return {k: BatchUsage.from_dict(v) for k, v in data.get("usage", {}).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def write_efficiency(run_dir: str | os.PathLike[str], usage: Mapping[str, BatchUsage]) -> Path:
    """Atomically (rename): a report built meanwhile reads the old file or the new one."""
    path = efficiency_path(run_dir)
    tmp = path.with_name(f".{EFFICIENCY_FILE}.{os.getpid()}")
    data = {"usage": {k: u.to_dict() for k, u in sorted(usage.items())}}
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _read_samples(run_dir: Path) -> tuple[list[NodeSeries], dict[str, int]]:
    series: dict[tuple[str, str], NodeSeries] = {}
    peaks: dict[str, int] = {}
    for path in sorted((run_dir / MONITOR_DIR).glob("*.jsonl")):
        for sample in read_monitor_file(path):
            try:
                if sample["kind"] == "job":
                    peak = int(sample.get("peak_rss_bytes") or sample.get("rss_bytes") or 0)
                    name = str(sample["job"])
                    peaks[name] = max(peaks.get(name, 0), peak)
                    continue
                batch, host = str(sample.get("batch") or path.stem), str(sample.get("host"))
                t, cpu = float(sample["t"]), float(sample["cpu_pct"])
                used, total = int(sample["mem_used_bytes"]), sample.get("mem_total_bytes")
            except (KeyError, TypeError, ValueError):
                continue  # a line of another version, or damaged: skip it, keep the rest
            one = series.setdefault((batch, host), NodeSeries(batch, host))
            one.t.append(t)
            one.cpu_pct.append(cpu)
            one.mem_used_bytes.append(used)
            one.mem_total_bytes = int(total) if isinstance(total, (int, float)) else None
    for one in series.values():
        order = sorted(range(len(one.t)), key=one.t.__getitem__)
        one.t = [one.t[i] for i in order]
        one.cpu_pct = [one.cpu_pct[i] for i in order]
        one.mem_used_bytes = [one.mem_used_bytes[i] for i in order]
    return sorted(series.values(), key=lambda s: (s.batch, s.host)), peaks


def gather_stats(
    run_dir: str | os.PathLike[str],
    usage: Mapping[str, BatchUsage] | None = None,
    records: dict[str, ResultRecord] | None = None,
) -> RunStats:
    """The run's stats. `usage` is what sacct just said (merged over the saved file's);
    None reads `efficiency.json` only. A usage whose job name is not the batch's (a job id
    the controller reused) is left out. `records`: the run's, when the caller has read
    them (a 100,000-job run's take ~1 s to read)."""
    run_dir = Path(run_dir)
    records = collect_results(run_dir) if records is None else records
    manifest = read_manifest(run_dir)
    expected = list(manifest.jobs) if manifest is not None and manifest.jobs else None
    jobs = slurm_jobs(run_dir, records)
    known = {**read_efficiency(run_dir), **(usage or {})}
    names = {j.job_id: j.job_name for j in jobs}
    kept = {
        job_id: u
        for job_id, u in known.items()
        if job_id in names and (names[job_id] is None or u.name == names[job_id])
    }
    series, peaks = _read_samples(run_dir)
    return RunStats(
        run_dir=run_dir,
        records=records,
        summary=summarize(records.values(), expected),
        slurm_jobs=jobs,
        usage=kept,
        node_series=series,
        monitor_peaks=peaks,
        spark_apps=read_spark_apps(run_dir),
        spark_clusters=read_cluster_infos(run_dir),
        slot_use=_slot_use(run_dir, records),
    )


def _slot_use(run_dir: Path, records: Mapping[str, ResultRecord]) -> list[SlotUse]:
    try:
        events = read_events(run_dir)
    except OSError:
        return []
    return slot_use(events, records)


SLOT_HEADER = [
    "batch",
    "slots",
    "jobs",
    "of others",
    "elapsed",
    "busy",
    "utilisation",
    "idle node-h",
]


def slot_rows(stats: RunStats) -> list[list[str]]:
    return [
        [
            u.batch,
            str(u.slots),
            str(u.jobs),
            str(u.others),
            fmt_duration(u.elapsed_s),
            fmt_duration(u.busy_s),
            fmt_pct(u.utilisation),
            f"{u.idle_node_hours:.4f}",
        ]
        for u in stats.slot_use
    ]


def slot_line(stats: RunStats) -> str:
    """The run's slots in one line: what an idle tail costs."""
    totals = slot_totals(stats.slot_use)
    use = totals.utilisation
    return (
        f"Slots busy {fmt_pct(use)} of the batches' "
        f"slot-time; {totals.idle_node_hours:.4f} node-hours idle; batches span "
        f"{fmt_duration(totals.makespan_s)}"
        + (f"; {totals.others} jobs ran in another batch than planned" if totals.others else "")
    )


# --- text -------------------------------------------------------------------------------------
def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    return fmt_hms(round(seconds))


def fmt_hms(seconds: float) -> str:
    """sacct's whole-second Elapsed as [D-]H:MM:SS."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """Columns padded to their widest cell; `right` aligns those columns to the right."""
    right = right or set()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


BATCH_HEADER = [
    "batch",
    "slurm job",
    "state",
    "elapsed",
    "cpus",
    "cpu eff",
    "max rss",
    "req mem",
    "mem eff",
    "node-h",
]


def batch_rows(stats: RunStats) -> list[list[str]]:
    """One row per SLURM job (a batch retried with more memory has two)."""
    rows = []
    for job in stats.slurm_jobs:
        u = stats.usage.get(job.job_id)
        if u is None:
            why = "local" if not job.accountable else "no sacct data"
            rows.append([job.batch, job.job_id, why, *(["-"] * 7)])
            continue
        rows.append(
            [
                job.batch,
                job.job_id,
                u.state,
                fmt_hms(u.elapsed_s),
                str(u.ncpus),
                fmt_pct(u.cpu_efficiency),
                fmt_bytes(u.max_rss_bytes),
                fmt_bytes(u.mem_per_node_bytes),
                fmt_pct(u.mem_efficiency),
                f"{u.node_hours:.4f}",
            ]
        )
    return rows


def job_summary(stats: RunStats, top: int = 10) -> dict[str, Any]:
    """Run times and the jobs with the highest peak memory."""
    ran = stats.ran()
    times = sorted(r.exec_time_s for r in ran)
    peaks = sorted(
        ((name, stats.peak_rss(name)) for name in stats.records),
        key=lambda item: -(item[1] or 0),
    )
    return {
        "ran": len(ran),
        "run_time_s": (
            {"min": times[0], "median": statistics.median(times), "max": times[-1]}
            if times
            else None
        ),
        "peak_rss": [
            {
                "job": name,
                "peak_rss_bytes": peak,
                "exec_time_s": stats.records[name].exec_time_s,
                "state": job_state(stats.records[name]),
                "batch": stats.records[name].batch,
            }
            for name, peak in peaks[:top]
            if peak
        ],
    }


def node_summary(stats: RunStats) -> list[list[str]]:
    rows = []
    for s in stats.node_series:
        if not s.t:
            continue
        rows.append(
            [
                s.batch,
                s.host,
                str(len(s.t)),
                fmt_duration(s.t[-1] - s.t[0]),
                f"{sum(s.cpu_pct) / len(s.cpu_pct):.1f}%",
                f"{max(s.cpu_pct):.1f}%",
                fmt_bytes(max(s.mem_used_bytes)),
                fmt_bytes(s.mem_total_bytes),
            ]
        )
    return rows


NODE_HEADER = ["batch", "host", "samples", "span", "cpu mean", "cpu max", "mem max", "mem total"]


SPARK_CLUSTER_HEADER = ["batch", "nodes", "workers alive", "cores", "memory", "start"]
SPARK_APP_HEADER = ["job", "app id", "name", "duration", "executors", "cores", "exit code"]
MIB = 1024 * 1024


def spark_cluster_rows(stats: RunStats) -> list[list[str]]:
    """One row per batch's cluster; `start` is how long the allocation waited for every
    worker to register, time the jobs of the batch could not use."""
    return [
        [
            c.batch,
            str(len(c.nodes)),
            str(c.workers_alive),
            str(c.cores),
            fmt_bytes(c.memory_mb * MIB),
            fmt_duration(c.start_s),
        ]
        for c in stats.spark_clusters
    ]


def spark_leftovers(stats: RunStats) -> list[str]:
    """Lines naming Spark processes a cluster's stop left behind: they hold the nodes'
    cores and memory from the next job, so they must not pass unnoticed."""
    return [
        f"Spark processes left after the stop of {c.batch}'s cluster: {', '.join(c.leftover)}"
        for c in stats.spark_clusters
        if c.leftover
    ]


def spark_app_state(stats: RunStats, app: SparkApp) -> str:
    """The exit code of an ended application; one without an end is `running` while its job
    is (no record of the job ending after the app started) and else `incomplete`: the driver
    died, or the job was killed, before Spark wrote the end."""
    if app.complete:
        return "-" if app.exit_code is None else str(app.exit_code)
    record = stats.records.get(app.job)
    if record is None or (app.start is not None and record.end < app.start):
        return "running"
    return "incomplete"


def spark_app_rows(stats: RunStats) -> list[list[str]]:
    """One row per Spark application, in start order (terminal and HTML report alike)."""
    return [
        [
            a.job,
            a.app_id,
            a.name or "-",
            fmt_duration(a.duration_s),
            str(a.executors),
            str(a.executor_cores),
            spark_app_state(stats, a),
        ]
        for a in stats.spark_apps
    ]


def totals_line(totals: UsageTotals) -> str:
    return (
        f"{totals.jobs} SLURM jobs, {totals.node_hours:.4f} node-hours; "
        f"CPU {totals.cpu_hours_used:.4f} of {totals.cpu_hours_allocated:.4f} CPU-hours used "
        f"({fmt_pct(totals.cpu_efficiency)}); mean memory efficiency "
        f"{fmt_pct(totals.mem_efficiency)}; peak RSS {fmt_bytes(totals.peak_rss_bytes)}"
    )


PEAK_HEADER = ["job", "batch", "state", "peak rss", "run time"]


def peak_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The top jobs by peak memory as table cells (terminal and HTML report alike)."""
    return [
        [
            p["job"],
            p["batch"],
            p["state"],
            fmt_bytes(p["peak_rss_bytes"]),
            fmt_duration(p["exec_time_s"]),
        ]
        for p in summary["peak_rss"]
    ]


def format_stats(stats: RunStats, top: int = 10) -> str:
    """The terminal view: counts, efficiency per batch and totals, node use, jobs."""
    out = [f"Run: {stats.run_dir}", f"Jobs: {stats.summary}", ""]
    out.append("Efficiency per batch (sacct):")
    if stats.slurm_jobs:
        out.append(table(BATCH_HEADER, batch_rows(stats), right=set(range(3, 10))))
    else:
        out.append("(no SLURM jobs found under slurm/ or in the records)")
    if stats.usage:
        out.append(f"Totals: {totals_line(stats.totals)}")
    else:
        out.append(
            "No accounting data: sacct is off or not reachable here, or the batches ran on "
            "the local backend."
        )
    if stats.slot_use:
        out += ["", "Slot use (busy slot-seconds / slots x elapsed):"]
        out.append(table(SLOT_HEADER, slot_rows(stats), right={1, 2, 3, 4, 5, 6, 7}))
        out.append(slot_line(stats))
    nodes = node_summary(stats)
    if nodes:
        out += ["", "Node use (resource monitor):", table(NODE_HEADER, nodes, right={2, 3, 4, 5})]
    if stats.spark_clusters:
        out += ["", "Spark clusters:"]
        out.append(table(SPARK_CLUSTER_HEADER, spark_cluster_rows(stats), right={1, 2, 3, 4, 5}))
        out += spark_leftovers(stats)
    if stats.spark_apps:
        out += ["", "Spark applications:"]
        out.append(table(SPARK_APP_HEADER, spark_app_rows(stats), right={3, 4, 5}))
    summary = job_summary(stats, top)
    out.append("")
    times = summary["run_time_s"]
    if times:
        out.append(
            f"Run time of the {summary['ran']} jobs that ran: min {fmt_duration(times['min'])}, "
            f"median {fmt_duration(times['median'])}, max {fmt_duration(times['max'])}"
        )
    else:
        out.append("No job ran.")
    if summary["peak_rss"]:
        out.append(f"Peak memory, top {len(summary['peak_rss'])}:")
        out.append(table(PEAK_HEADER, peak_rows(summary), right={3, 4}))
    return "\n".join(out)


def stats_to_dict(stats: RunStats, top: int = 10) -> dict[str, Any]:
    """The same figures for machines (`jobforge stats --json`)."""
    totals = stats.totals
    return {
        "run_dir": str(stats.run_dir),
        "summary": {
            "total": stats.summary.total,
            "successful": stats.summary.successful,
            "failed": stats.summary.failed,
            "canceled": stats.summary.canceled,
            "missing": stats.summary.missing,
        },
        "batches": [
            {
                "batch": j.batch,
                "slurm_job_id": j.job_id,
                **(
                    {
                        **stats.usage[j.job_id].to_dict(),
                        "cpu_efficiency": stats.usage[j.job_id].cpu_efficiency,
                        "mem_efficiency": stats.usage[j.job_id].mem_efficiency,
                        "node_hours": stats.usage[j.job_id].node_hours,
                    }
                    if j.job_id in stats.usage
                    else {}
                ),
            }
            for j in stats.slurm_jobs
        ],
        "totals": totals.__dict__ if stats.usage else None,
        "jobs": job_summary(stats, top),
        "slot_use": [u.to_dict() for u in stats.slot_use],
        "spark_clusters": [c.to_dict() for c in stats.spark_clusters],
        "spark_apps": [a.to_dict() for a in stats.spark_apps],
    }


def run_job_ids(
    run_dir: str | os.PathLike[str], records: dict[str, ResultRecord] | None = None
) -> list[str]:
    """The run's SLURM job ids sacct can know (what to pass to `client.usage`); `records`
    as for `gather_stats`."""
    records = collect_results(run_dir) if records is None else records
    return accountable_ids(slurm_jobs(run_dir, records))


# --- pipelines --------------------------------------------------------------------------------
@dataclass
class PipelineStats:
    """Each stage with its stats (None before it left a run dir)."""

    run_dir: Path
    stages: list[tuple[Stage, RunStats | None]]

    def gathered(self) -> list[RunStats]:
        return [stats for _, stats in self.stages if stats is not None]

    @property
    def summary(self) -> Summary:
        return add_summaries([stats.summary for stats in self.gathered()])

    @property
    def usage(self) -> list[BatchUsage]:
        return [
            stats.usage[j.job_id]
            for stats in self.gathered()
            for j in stats.slurm_jobs
            if j.job_id in stats.usage
        ]

    @property
    def totals(self) -> UsageTotals:
        return usage_totals(self.usage)

    @property
    def job_cpu_time_s(self) -> float | None:
        """The CPU time the jobs' records give, summed; None when none gives one."""
        times = [
            r.cpu_time_s
            for stats in self.gathered()
            for r in stats.records.values()
            if r.cpu_time_s is not None
        ]
        return sum(times) if times else None


def pipeline_job_ids(run_dir: str | os.PathLike[str]) -> list[str]:
    """Every stage's SLURM job ids sacct can know: one `client.usage` for the pipeline."""
    return [i for stage in read_stages(run_dir) if stage.started for i in run_job_ids(stage.dir)]


def gather_pipeline_stats(
    run_dir: str | os.PathLike[str], usage: Mapping[str, BatchUsage] | None = None
) -> PipelineStats:
    """`gather_stats` of every stage that left a run dir; `usage` may hold every stage's
    (each stage keeps the jobs of its own batches)."""
    return PipelineStats(
        Path(run_dir),
        [
            (stage, gather_stats(stage.dir, usage) if stage.started else None)
            for stage in read_stages(run_dir)
        ],
    )


def format_pipeline_stats(stats: PipelineStats, top: int = 10) -> str:
    """Each stage's heading and stats, then the totals over the stages."""
    out = [f"Pipeline: {stats.run_dir}"]
    for stage, one in stats.stages:
        out += ["", stage_heading(stage, one.summary if one else None)]
        if one is not None:
            out.append(format_stats(one, top))
    out += [
        "",
        f"Totals over {stages_line([stage for stage, _ in stats.stages])}",
        f"Jobs: {stats.summary}",
    ]
    if stats.usage:
        out.append(f"SLURM: {totals_line(stats.totals)}")
    if stats.job_cpu_time_s is not None:
        out.append(f"CPU time of the jobs (their records): {fmt_duration(stats.job_cpu_time_s)}")
    return "\n".join(out)


def pipeline_stats_to_dict(stats: PipelineStats, top: int = 10) -> dict[str, Any]:
    summary = stats.summary
    return {
        "pipeline_dir": str(stats.run_dir),
        "stages": [
            {
                "name": stage.name,
                "number": stage.entry.number,
                "kind": stage.entry.kind,
                "state": stage.state,
                "reason": stage.reason,
                "stats": stats_to_dict(one, top) if one is not None else None,
            }
            for stage, one in stats.stages
        ],
        "totals": {
            "summary": {
                "total": summary.total,
                "successful": summary.successful,
                "failed": summary.failed,
                "canceled": summary.canceled,
                "missing": summary.missing,
            },
            "usage": stats.totals.__dict__ if stats.usage else None,
            "job_cpu_time_s": stats.job_cpu_time_s,
        },
    }
