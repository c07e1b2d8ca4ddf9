"""What a batch's Spark cluster leaves in the run dir, and how it is read.

    spark/<batch>/cluster.json              the cluster: master URL, nodes, workers, timings
    spark/<batch>/logs/master.log           the master's log; worker-<host>.log per node
    spark/<batch>/logs/executors/<host>/<app id>/<executor>/stdout|stderr
    spark/<batch>/events/<job>/<app id>     Spark event logs of the applications a job ran

The node runner hands each job its own `SPARK_CONF_DIR`, whose `spark.eventLog.dir` is the
job's events dir: which job ran which application is then a fact of the file system, also
when jobs of a batch run at once. Event logs are JSON lines; a reader needs only a handful
of event types (application start/end, executors), so lines are matched by their event name
before any JSON is parsed: a long application's log has millions of task events.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SPARK_DIR = "spark"
EVENTS_DIR = "events"
LOGS_DIR = "logs"
CLUSTER_FILE = "cluster.json"
IN_PROGRESS = ".inprogress"
ROLLING_PREFIX = "eventlog_v2_"
# app-<yyyyMMddHHmmss>-<nnnn> (standalone), also with a compression or .inprogress suffix
_APP_FILE = re.compile(
    r"(?:eventlog_v2_)?(?P<id>(?:app|local|application)-[A-Za-z0-9_-]+?)"
    r"(?P<codec>\.(?:lz4|lzf|snappy|zstd))?(?P<open>\.inprogress)?"
)
_CODECS = (".lz4", ".lzf", ".snappy", ".zstd")
_WANTED = (
    b'"Event":"SparkListenerApplicationStart"',
    b'"Event":"SparkListenerApplicationEnd"',
    b'"Event":"SparkListenerExecutorAdded"',
)


def spark_batch_dir(output_dir: str | os.PathLike[str], batch: str) -> Path:
    return Path(output_dir) / SPARK_DIR / batch


def job_events_dir(output_dir: str | os.PathLike[str], batch: str, job: str) -> Path:
    return spark_batch_dir(output_dir, batch) / EVENTS_DIR / job


@dataclass(frozen=True)
class ClusterInfo:
    """One batch's Spark cluster as its runner saw it start (and stop)."""

    batch: str
    master_url: str
    web_ui: str
    master_host: str
    nodes: list[str]
    workers_alive: int
    cores: int
    memory_mb: int
    started: float
    """When the runner began starting the cluster (the allocation's first moments)."""
    ready: float
    """When the master reported every worker alive."""
    hpc_job_id: str | None = None
    stopped: float | None = None
    leftover: list[str] = field(default_factory=list)
    """Spark processes still found after the stop (should stay empty)."""

    @property
    def start_s(self) -> float:
        return round(self.ready - self.started, 3)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "start_s": self.start_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterInfo:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def write_cluster_info(output_dir: str | os.PathLike[str], info: ClusterInfo) -> Path:
    path = spark_batch_dir(output_dir, info.batch) / CLUSTER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info.to_dict(), indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def read_cluster_infos(run_dir: str | os.PathLike[str]) -> list[ClusterInfo]:
    """Every batch's cluster of the run, by batch name; unreadable files are skipped."""
    infos = []
    for path in sorted(Path(run_dir, SPARK_DIR).glob(f"*/{CLUSTER_FILE}")):
        try:
            infos.append(ClusterInfo.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue
    return infos


def app_ids(events_dir: str | os.PathLike[str], since: float | None = None) -> list[str]:
    """The applications whose event logs are in `events_dir`, oldest first; with `since`, only
    those written to at or after it (a rerun of the job in the same batch has the dir too)."""
    found: list[tuple[float, str]] = []
    try:
        entries = list(os.scandir(events_dir))
    except OSError:
        return []
    for entry in entries:
        match = _APP_FILE.fullmatch(entry.name)
        if not match:
            continue
        try:
            mtime = entry.stat().st_mtime
        except OSError:
            continue
        if since is None or mtime >= since - 1:
            found.append((mtime, match["id"]))
    return [app for _, app in sorted(found)]


@dataclass(frozen=True)
class SparkApp:
    """One Spark application, read from its event log."""

    app_id: str
    name: str | None
    batch: str
    job: str
    start: float | None
    end: float | None
    executors: int
    executor_cores: int
    exit_code: int | None
    complete: bool
    """False while running, or when the driver died before writing its end."""

    @property
    def duration_s(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return round(self.end - self.start, 3)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}


def _event_log_file(path: Path) -> Path | None:
    """The readable file of an event log: the file itself, or a rolling log's first part."""
    if path.is_dir():
        parts = sorted(path.glob("events_*"))
        return parts[0] if parts else None
    return path


def read_app(path: str | os.PathLike[str], batch: str, job: str) -> SparkApp | None:
    """The application of one event log file (or rolling dir); None when it is not one.
    A compressed log yields its id alone: its codec is Spark's to read."""
    path = Path(path)
    match = _APP_FILE.fullmatch(path.name)
    if not match:
        return None
    start = end = None
    name = None
    exit_code = None
    executors = cores = 0
    ended = False
    source = _event_log_file(path)
    if source is not None and not match["codec"] and source.suffix not in _CODECS:
        try:
            with open(source, "rb") as handle:
                for line in handle:
                    if not any(w in line for w in _WANTED):
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:  # the last line of a log being written
                        continue
                    kind = event.get("Event")
                    if kind == "SparkListenerApplicationStart":
                        name = event.get("App Name")
                        start = event.get("Timestamp", 0) / 1000 or None
                    elif kind == "SparkListenerApplicationEnd":
                        end = event.get("Timestamp", 0) / 1000 or None
                        exit_code = event.get("ExitCode")
                        ended = True
                    elif kind == "SparkListenerExecutorAdded":
                        executors += 1
                        cores += int(event.get("Executor Info", {}).get("Total Cores") or 0)
        except OSError:
            pass
    return SparkApp(
        app_id=match["id"],
        name=name,
        batch=batch,
        job=job,
        start=start,
        end=end,
        executors=executors,
        executor_cores=cores,
        exit_code=exit_code,
        complete=ended and not match["open"],
    )


def read_spark_apps(run_dir: str | os.PathLike[str]) -> list[SparkApp]:
    """Every Spark application of the run, in start order."""
    apps = []
    for job_dir in sorted(Path(run_dir, SPARK_DIR).glob(f"*/{EVENTS_DIR}/*")):
        batch = job_dir.parent.parent.name
        for entry in sorted(job_dir.iterdir()):
            app = read_app(entry, batch, job_dir.name)
            if app is not None:
                apps.append(app)
    return sorted(apps, key=lambda a: (a.start or float("inf"), a.app_id))
