"""The run's HTML report: one self-contained file with tables and interactive plotly plots.

Self-contained because compute clusters are often offline and reports get mailed around:
plotly.js is inlined once (no CDN), no external font or image, every figure a `<div>` with
its data. A run of 100,000 jobs must still give a file a browser opens: node series are
thinned to MAX_POINTS per trace, histograms are binned here, and the job timeline shows at
most MAX_TIMELINE_ROWS jobs (every job that did not succeed first, then an even sample of the
rest), the page says how many it shows.

A pipeline run gets an index page besides (`write_pipeline_report`): its stages, their
states and counts, each linking to the stage's own report.
"""

from __future__ import annotations

import html
import math
import os
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_jobforge.results.show import expected_jobs
from airflow_jobforge.results.stats import (
    BATCH_HEADER,
    NODE_HEADER,
    PEAK_HEADER,
    SLOT_HEADER,
    SPARK_APP_HEADER,
    SPARK_CLUSTER_HEADER,
    PipelineStats,
    RunStats,
    batch_rows,
    fmt_duration,
    gather_stats,
    job_summary,
    node_summary,
    peak_rows,
    slot_line,
    slot_rows,
    spark_app_rows,
    spark_cluster_rows,
    spark_leftovers,
    totals_line,
    write_efficiency,
)
from airflow_jobforge.rundir.manifest import read_manifest
from airflow_jobforge.rundir.pipeline import Stage, add_summaries, read_stages, stages_line
from airflow_jobforge.rundir.records import (
    ResultRecord,
    Summary,
    collect_results,
    job_state,
    summarize,
)
from airflow_jobforge.slurm.usage import BatchUsage

REPORT_FILE = "report.html"
MAX_POINTS = 2000
MAX_SVG_POINTS = 20000
MAX_TIMELINE_ROWS = 2000
HIST_BINS = 40
MIB = 1024 * 1024
STATE_COLOURS = {"ok": "#2ca02c", "failed": "#d62728", "missing": "#ff7f0e", "canceled": "#7f7f7f"}
_CONFIG = {"displaylogo": False, "responsive": True}
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em;
       color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: 0.9em; }
.plot { border: 1px solid #eee; margin: 0.8em 0; }
"""


def _when(t: float) -> str:
    """Local time as plotly reads dates; the page says which zone."""
    return datetime.fromtimestamp(t).isoformat(timespec="milliseconds")


def _thin(values: Sequence[Any], limit: int = MAX_POINTS) -> list[Any]:
    step = max(1, math.ceil(len(values) / limit))
    return list(values[::step])


def _bins(values: Sequence[float], bins: int = HIST_BINS) -> tuple[list[float], list[int], float]:
    """Bin centres, counts and width: a histogram as a few numbers, whatever the job count."""
    low, high = min(values), max(values)
    width = (high - low) / bins if high > low else 1.0
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return [low + width * (i + 0.5) for i in range(bins)], counts, width


def _figure_html(fig: Any, div_id: str) -> str:
    return fig.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG
    ).replace('<div style="height:100%; width:100%;">', '<div class="plot">', 1)


def node_figures(stats: RunStats) -> list[str]:
    import plotly.graph_objects as go

    if not any(s.t for s in stats.node_series):
        return []
    cpu, mem = go.Figure(), go.Figure()
    # SVG draws everywhere (also where WebGL is off); past some 20,000 points only WebGL
    # stays responsive.
    points = sum(min(len(s.t), MAX_POINTS) for s in stats.node_series)
    scatter = go.Scatter if points <= MAX_SVG_POINTS else go.Scattergl
    for s in stats.node_series:
        name = f"{s.batch} @ {s.host}"
        x = [_when(t) for t in _thin(s.t)]
        cpu.add_trace(scatter(x=x, y=_thin(s.cpu_pct), mode="lines", name=name))
        mem.add_trace(
            scatter(x=x, y=[b / MIB for b in _thin(s.mem_used_bytes)], mode="lines", name=name)
        )
    cpu.update_layout(
        title="Node CPU over time (% of the whole node)",
        xaxis_title="time",
        yaxis=dict(title="CPU %", range=[0, 105]),
        template="plotly_white",
        height=380,
    )
    mem.update_layout(
        title="Node memory used over time",
        xaxis_title="time",
        yaxis=dict(title="MiB", rangemode="tozero"),
        template="plotly_white",
        height=380,
    )
    return [_figure_html(cpu, "node-cpu"), _figure_html(mem, "node-mem")]


def _histogram(values: Sequence[float], title: str, unit: str, div_id: str) -> str:
    import plotly.graph_objects as go

    centres, counts, width = _bins(values)
    fig = go.Figure(go.Bar(x=centres, y=counts, width=[width] * len(counts), name=title))
    fig.update_layout(
        title=f"{title} ({len(values)} jobs)",
        xaxis_title=unit,
        yaxis_title="jobs",
        bargap=0.02,
        template="plotly_white",
        height=340,
    )
    return _figure_html(fig, div_id)


def distribution_figures(stats: RunStats) -> list[str]:
    figures = []
    peaks = [p / MIB for p in (stats.peak_rss(n) for n in stats.records) if p]
    if peaks:
        figures.append(_histogram(peaks, "Per-job peak memory", "MiB", "job-peak-mem"))
    times = [r.exec_time_s for r in stats.ran()]
    if times:
        figures.append(_histogram(times, "Per-job run time", "seconds", "job-run-time"))
    return figures


def timeline_rows(
    records: Mapping[str, ResultRecord], limit: int = MAX_TIMELINE_ROWS
) -> list[ResultRecord]:
    """Jobs that ran, by start: all that did not succeed first, then an even sample."""
    ran = sorted((r for r in records.values() if r.start is not None), key=lambda r: r.start)
    if len(ran) <= limit:
        return ran
    bad = [r for r in ran if not r.succeeded][:limit]
    good = [r for r in ran if r.succeeded]
    room = limit - len(bad)
    sample = [good[int(i * len(good) / room)] for i in range(room)] if room > 0 else []
    return sorted(bad + sample, key=lambda r: r.start or 0.0)


def timeline_figure(stats: RunStats) -> tuple[str, str] | None:
    """The Gantt chart and the sentence saying what it shows."""
    import plotly.graph_objects as go

    rows = timeline_rows(stats.records)
    if not rows:
        return None
    total = len(stats.ran())
    first = min(r.start or r.end for r in rows)
    span = max(r.end for r in rows) - first
    shortest = max(span / 400, 0.001)  # a job of a few ms still shows; hover says its time
    fig = go.Figure()
    for state, colour in STATE_COLOURS.items():
        mine = [r for r in rows if job_state(r) == state]
        if not mine:
            continue
        fig.add_trace(
            go.Bar(
                orientation="h",
                base=[_when(r.start or r.end) for r in mine],
                x=[max(r.end - (r.start or r.end), shortest) * 1000 for r in mine],
                y=[r.name for r in mine],
                name=state,
                marker_color=colour,
                customdata=[[r.batch, r.host or "", fmt_duration(r.exec_time_s)] for r in mine],
                hovertemplate="%{y}<br>batch %{customdata[0]} on %{customdata[1]}"
                "<br>%{base} + %{customdata[2]}<extra>" + state + "</extra>",
            )
        )
    order = [r.name for r in rows]
    fig.update_layout(
        title="Job timeline",
        barmode="overlay",
        xaxis=dict(type="date", title="time"),
        yaxis=dict(
            categoryorder="array",
            categoryarray=order[::-1],
            showticklabels=len(rows) <= 60,
            title="job" if len(rows) <= 60 else f"{len(rows)} jobs (hover for names)",
        ),
        template="plotly_white",
        height=min(260 + 16 * len(rows), 2400),
    )
    note = (
        f"All {total} jobs that ran."
        if len(rows) == total
        else f"{len(rows)} of {total} jobs that ran: every one that did not succeed, then an "
        "even sample of the rest (a browser cannot draw them all)."
    )
    return _figure_html(fig, "job-timeline"), note


def efficiency_figure(stats: RunStats) -> str | None:
    import plotly.graph_objects as go

    shown: list[tuple[str, BatchUsage]] = [
        (f"{j.batch} ({j.job_id})", stats.usage[j.job_id])
        for j in stats.slurm_jobs
        if j.job_id in stats.usage
    ]
    if not shown:
        return None
    labels = [label for label, _ in shown]

    def pct(value: float | None) -> float | None:
        return None if value is None else round(100 * value, 1)

    fig = go.Figure(
        [
            go.Bar(x=labels, y=[pct(u.cpu_efficiency) for _, u in shown], name="CPU efficiency"),
            go.Bar(x=labels, y=[pct(u.mem_efficiency) for _, u in shown], name="memory efficiency"),
        ]
    )
    fig.update_layout(
        title="Efficiency per batch (sacct)",
        barmode="group",
        yaxis_title="%",
        template="plotly_white",
        height=380,
    )
    return _figure_html(fig, "batch-efficiency")


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{html.escape(str(c))}</td>'
            if i in numeric
            else f"<td>{html.escape(str(c))}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(stats: RunStats, *, top: int = 10) -> str:
    """The whole page as one string."""
    from plotly.offline import get_plotlyjs

    s = stats.summary
    counts = _html_table(
        ["total", "successful", "failed", "canceled", "missing"],
        [[str(s.total), str(s.successful), str(s.failed), str(s.canceled), str(s.missing)]],
        numeric={0, 1, 2, 3, 4},
    )
    parts = [
        f"<h1>jobforge run report</h1><p class='note'>{html.escape(str(stats.run_dir))}<br>"
        f"made {html.escape(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}; times are local "
        f"({html.escape(time.strftime('%Z'))})</p>",
        "<h2>Jobs</h2>",
        counts,
        "<h2>Efficiency per batch</h2>",
    ]
    if stats.slurm_jobs:
        parts.append(_html_table(BATCH_HEADER, batch_rows(stats), numeric=set(range(3, 10))))
    if stats.usage:
        parts.append(f"<p>{html.escape(totals_line(stats.totals))}</p>")
        parts.append(efficiency_figure(stats) or "")
    else:
        parts.append(
            "<p class='note'>No accounting data: sacct is off or was not reachable, or the "
            "batches ran on the local backend.</p>"
        )
    nodes = node_summary(stats)
    parts.append("<h2>Node use (resource monitor)</h2>")
    if nodes:
        parts.append(_html_table(NODE_HEADER, nodes, numeric={2, 3, 4, 5}))
        parts.extend(node_figures(stats))
    else:
        parts.append("<p class='note'>No monitor samples in this run.</p>")
    if stats.slot_use:
        parts.append("<h2>Slot use</h2>")
        parts.append(_html_table(SLOT_HEADER, slot_rows(stats), {1, 2, 3, 4, 5, 6, 7}))
        parts.append(f"<p>{html.escape(slot_line(stats))}</p>")
    if stats.spark_clusters:
        parts.append("<h2>Spark clusters</h2>")
        parts.append(_html_table(SPARK_CLUSTER_HEADER, spark_cluster_rows(stats), {1, 2, 3, 4, 5}))
        parts.extend(f"<p>{html.escape(line)}</p>" for line in spark_leftovers(stats))
    if stats.spark_apps:
        parts.append("<h2>Spark applications</h2>")
        parts.append(_html_table(SPARK_APP_HEADER, spark_app_rows(stats), {3, 4, 5}))
    parts.append("<h2>Jobs: run time and memory</h2>")
    summary = job_summary(stats, top)
    if summary["run_time_s"]:
        t = summary["run_time_s"]
        parts.append(
            f"<p>{summary['ran']} jobs ran: run time min {fmt_duration(t['min'])}, median "
            f"{fmt_duration(t['median'])}, max {fmt_duration(t['max'])}.</p>"
        )
    parts.extend(distribution_figures(stats))
    if summary["peak_rss"]:
        parts.append(f"<p>Peak memory, top {len(summary['peak_rss'])}:</p>")
        parts.append(_html_table(PEAK_HEADER, peak_rows(summary), {3, 4}))
    timeline = timeline_figure(stats)
    parts.append("<h2>Job timeline</h2>")
    if timeline:
        figure, note = timeline
        parts += [f"<p class='note'>{html.escape(note)}</p>", figure]
    else:
        parts.append("<p class='note'>No job ran.</p>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>jobforge report: {html.escape(stats.run_dir.name)}</title>"
        f"<style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        + "\n".join(parts)
        + "</body></html>\n"
    )


def write_report(
    run_dir: str | os.PathLike[str],
    stats: RunStats | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Path:
    """`<run>/report.html` (or `path`), atomically: a reader never sees half a report."""
    stats = stats or gather_stats(run_dir)
    target = Path(path) if path else Path(run_dir) / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(report_html(stats), encoding="utf-8")
    os.replace(tmp, target)
    return target


def build_report(run_dir: Path, usage: dict[str, BatchUsage] | None = None) -> Path:
    """What the summary task calls: the run's stats with `usage` (what sacct said, from
    `client.usage(...)`; None: the saved efficiency.json only), saved to efficiency.json when
    given, and `<run>/report.html`. Returns the report's path."""
    stats = gather_stats(run_dir, usage)
    if usage:
        write_efficiency(run_dir, stats.usage)
    return write_report(run_dir, stats)


def _stage_summary(run_dir: Path) -> Summary:
    """The counts alone: no monitor samples read, as `load_run` would."""
    records = collect_results(run_dir)
    return summarize(records.values(), expected_jobs(run_dir, records, read_manifest(run_dir)))


def pipeline_report_html(run_dir: Path, stages: Sequence[Stage], links: Mapping[str, str]) -> str:
    """The index page: one row per stage, a link to each stage report in `links`."""
    header = ["stage", "name", "kind", "state", "reason", "total", "successful", "failed"]
    header += ["canceled", "missing", "report"]
    summaries: list[Summary] = []
    rows = []
    for stage in stages:
        summary = _stage_summary(stage.dir) if stage.started else None
        if summary is not None:
            summaries.append(summary)
        figures = (
            [summary.total, summary.successful, summary.failed, summary.canceled, summary.missing]
            if summary is not None
            else [""] * 5
        )
        state = html.escape(stage.state)
        cells = [
            f"<td class='n'>{stage.entry.number}</td>",
            f"<td>{html.escape(stage.name)}</td>",
            f"<td>{html.escape(stage.entry.describe())}</td>",
            f"<td class='{state.replace(' ', '-')}'>{state}</td>",
            f"<td>{html.escape(stage.reason or '')}</td>",
            *(f"<td class='n'>{f}</td>" for f in figures),
            f"<td><a href='{html.escape(links[stage.name])}'>report</a></td>"
            if stage.name in links
            else "<td></td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    total = add_summaries(summaries)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>jobforge pipeline report: {html.escape(run_dir.name)}</title>"
        f"<style>{_STYLE} .failed {{ color: #d62728; }} .success {{ color: #2ca02c; }}</style>"
        "</head><body><h1>jobforge pipeline report</h1>"
        f"<p class='note'>{html.escape(str(run_dir))}<br>made "
        f"{html.escape(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}</p>"
        f"<p>{html.escape(stages_line(list(stages)))}; {html.escape(str(total))}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "</body></html>\n"
    )


def write_pipeline_report(
    run_dir: str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    stage_reports: Mapping[str, str | os.PathLike[str]] | None = None,
) -> Path:
    """`<pipeline run>/report.html` (or `path`), atomically: the stages and a link to each
    stage's report, `stage_reports` (stage -> file) or else `<stage>/report.html` where the
    stage's summary wrote one. Links are relative to the index, so the run dir can move."""
    run_dir = Path(run_dir)
    target = Path(path) if path else run_dir / REPORT_FILE
    stages = read_stages(run_dir)
    reports = {
        stage.name: Path(stage_reports[stage.name])
        if stage_reports and stage.name in stage_reports
        else stage.dir / REPORT_FILE
        for stage in stages
    }
    links = {
        name: urllib.parse.quote(os.path.relpath(report, target.parent))
        for name, report in reports.items()
        if report.is_file()
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(pipeline_report_html(run_dir, stages, links), encoding="utf-8")
    os.replace(tmp, target)
    return target


def write_pipeline_reports(stats: PipelineStats, path: str | os.PathLike[str]) -> Path:
    """`jobforge stats PIPELINE --html PATH`: the index at `path`, each stage's report
    beside it (`<stem>.<stage>.html`), the run dir untouched. Returns the index's path."""
    index = Path(path)
    reports = {
        stage.name: write_report(
            one.run_dir, one, index.with_name(f"{index.stem}.{stage.name}.html")
        )
        for stage, one in stats.stages
        if one is not None
    }
    return write_pipeline_report(stats.run_dir, index, reports)
