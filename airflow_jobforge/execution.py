"""Run-time decisions of the provider's tasks, kept pure (no Airflow import) and tested alone:
submission tags, job selection from DAG params, SLURM overrides, rerun batches.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from airflow_jobforge.config.models import ContainerParams, SlurmParams
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.node.spec import BatchSpec
from airflow_jobforge.slurm.script import SubmitRequest

OVERRIDABLE = ("partition", "account", "qos", "walltime")


def run_key(dag_id: str, run_id: str) -> str:
    """A short, tag-safe key unique per DAG run (run ids hold ':' and '+')."""
    return hashlib.sha1(f"{dag_id}\0{run_id}".encode()).hexdigest()[:12]


def safe_run_id(run_id: str) -> str:
    """A run id as a directory name: 'manual__2026-01-01T00:00:00+00:00' keeps its meaning."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def submit_tag(key: str, batch: str, try_number: int, kind: str = "t") -> str:
    """Unique per (DAG run, batch, attempt): a restart of the same attempt adopts its job."""
    return f"{key}.{batch}.{kind}{try_number}"


def selected(names: Iterable[str], patterns: Sequence[str] | None) -> list[str]:
    """Names matching any glob of `patterns`; all names when there are no patterns."""
    names = list(names)
    if not patterns:
        return names
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def restrict_batch(spec: BatchSpec, keep: Iterable[str], batch: str | None = None) -> BatchSpec:
    """The batch with only the `keep` jobs (a rerun). Their blockers inside the batch that are
    not rerun become external: the runner reads those blockers' latest records."""
    keep = set(keep)
    jobs = tuple(
        replace(
            job,
            blocked_by=tuple(b for b in job.blocked_by if b in keep),
            external_blockers=job.external_blockers
            + tuple(b for b in job.blocked_by if b not in keep),
        )
        for job in spec.jobs
        if job.name in keep
    )
    return replace(spec, batch=batch or spec.batch, jobs=jobs)


def drop_unselected_blockers(
    spec: BatchSpec, choose: Callable[[Sequence[str]], list[str]] | Sequence[str] | None
) -> BatchSpec:
    """Blockers in other batches that the run's selection leaves out count as done.
    `choose` is a `Selection` (or glob patterns): it keeps the names this run runs."""
    if not choose:
        return spec
    keep = choose if callable(choose) else (lambda names: selected(names, choose))
    jobs = tuple(replace(j, external_blockers=tuple(keep(j.external_blockers))) for j in spec.jobs)
    return replace(spec, jobs=jobs)


def apply_overrides(slurm: SlurmParams, params: Mapping[str, Any]) -> SlurmParams:
    """DAG-run params that override the group's partition/account/qos/walltime (validated)."""
    update = {k: params[k] for k in OVERRIDABLE if params.get(k) not in (None, "")}
    if not update:
        return slurm
    try:
        return SlurmParams.model_validate({**slurm.model_dump(), **update})
    except ValueError as exc:
        raise JobForgeError(f"invalid DAG run parameter: {exc}") from None


def request_to_dict(request: SubmitRequest) -> dict[str, Any]:
    """A SubmitRequest as XCom-safe JSON data, so a later task can resubmit it."""
    return {
        "tag": request.tag,
        "batch": request.batch.to_dict(),
        "slurm": request.slurm.model_dump(mode="json"),
        "output_dir": request.output_dir,
        "container": request.container.model_dump(mode="json") if request.container else None,
        "python": request.python,
        "pythonpath": request.pythonpath,
        "workdir": request.workdir,
        "array": request.array,
        "array_throttle": request.array_throttle,
    }


def request_from_dict(data: Mapping[str, Any]) -> SubmitRequest:
    container = data.get("container")
    return SubmitRequest(
        tag=data["tag"],
        batch=BatchSpec.from_dict(dict(data["batch"])),
        slurm=SlurmParams.model_validate(data["slurm"]),
        output_dir=data["output_dir"],
        container=ContainerParams.model_validate(container) if container else None,
        python=data.get("python") or "python3",
        pythonpath=data.get("pythonpath"),
        workdir=data.get("workdir"),
        array=bool(data.get("array")),
        array_throttle=data.get("array_throttle"),
    )


def rerun_names(batch: str, task_id: str, try_number: int) -> tuple[str, str]:
    """(batch file name, tag part) of the rerun a cleared result task submits: unique per
    (task, cleared attempt) and independent of which jobs it holds, so a retry of that
    attempt after an infrastructure error finds and adopts it instead of submitting twice."""
    digest = hashlib.sha1(task_id.encode()).hexdigest()[:8]
    return f"{batch}-rerun{try_number}-{digest}", f"{batch}.r{try_number}-{digest}"


@dataclass(frozen=True)
class Attempt:
    """Which try of a task instance this is, and who started the series it belongs to.

    Airflow numbers tries across clears. A user's clear sets `max_tries = try_number +
    retries`, so the series of tries that a clear (or the first run) started begins at
    `max_tries - retries + 1` — the formula Airflow's own task runner uses to find a
    sensor's first reschedule. Tries after `first` are automatic retries, which jobforge
    spends only on infrastructure errors: they must adopt what the series already submitted.
    """

    try_number: int
    first: int = 1

    @property
    def is_retry(self) -> bool:
        return self.try_number > self.first

    @property
    def cleared(self) -> bool:
        """The series began with a user's clear (or mark), not with the run."""
        return self.first > 1

    def earlier_in_series(self) -> range:
        """Earlier tries of this series, newest first."""
        return range(self.try_number - 1, self.first - 1, -1)


def attempt(try_number: int, max_tries: int | None, retries: int) -> Attempt:
    if max_tries is None or max_tries < 0:  # unknown (a hand-made context): a first series
        return Attempt(try_number, 1)
    return Attempt(try_number, min(try_number, max(1, max_tries - retries + 1)))


# --- rerun_of: a run that repeats the jobs an earlier run did not get done -------------------
RERUN_KINDS = ("failed", "missing", "canceled")
DEFAULT_RERUN = ("failed", "missing")


def rerun_kinds(value: Any) -> tuple[str, ...]:
    """The `rerun` param: which outcomes of the earlier run run again (validated)."""
    kinds = tuple(value) if value else DEFAULT_RERUN
    bad = [k for k in kinds if k not in RERUN_KINDS]
    if bad:
        raise JobForgeError(
            f"invalid DAG run parameter rerun: {bad} (choose from {', '.join(RERUN_KINDS)})"
        )
    return kinds


@dataclass(frozen=True)
class Selection:
    """Which jobs one DAG run runs: the `jobs` param's globs and, with `rerun_of`, only the
    jobs whose outcome in that earlier run (`earlier`: its latest records) is in `kinds`."""

    patterns: tuple[str, ...] = ()
    earlier: Mapping[str, Any] | None = None
    kinds: tuple[str, ...] = DEFAULT_RERUN

    def __call__(self, names: Iterable[str]) -> list[str]:
        chosen = selected(names, self.patterns)
        if self.earlier is None:
            return chosen
        return rerun_selection(chosen, self.earlier, self.kinds)

    def __bool__(self) -> bool:
        return bool(self.patterns) or self.earlier is not None


def rerun_selection(
    names: Iterable[str], earlier: Mapping[str, Any], kinds: Sequence[str]
) -> list[str]:
    """Names whose outcome in the earlier run (its latest records) is one of `kinds`; a job
    without a record there counts as missing. `earlier` maps names to ResultRecords."""
    from airflow_jobforge.results import job_state

    wanted = set(kinds)
    return [n for n in names if job_state(earlier.get(n)) in wanted]


# --- retry with more resources ---------------------------------------------------------------
_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def memory_mb(value: str) -> float:
    """A SLURM size ('4G', '500M', '100' = MB) in MB."""
    unit = value[-1].upper() if value[-1].isalpha() else "M"
    number = value[:-1] if value[-1].isalpha() else value
    return float(number) * _UNITS[unit]


def format_memory(mb: float) -> str:
    """MB as the largest exact SLURM unit: 16384 -> '16G', 1536 -> '1536M'."""
    mb = int(-(-mb // 1))  # round up: never ask for less than computed
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"


def format_walltime(delta: Any) -> str:
    seconds = int(-(-delta.total_seconds() // 1))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{text}" if days else text


RESOURCE_STATES = ("OUT_OF_MEMORY", "TIMEOUT")


def raised_limits(slurm: SlurmParams, retry: Mapping[str, Any], state: str) -> SlurmParams | None:
    """The group's next attempt after `state` (OUT_OF_MEMORY / TIMEOUT): `slurm` with memory or
    walltime multiplied and capped; None when the group does not retry that state or the
    limit is already at its cap (asking again for the same would fail the same way)."""
    from airflow_jobforge.config.fields import parse_walltime

    if state == "OUT_OF_MEMORY" and retry.get("out_of_memory") and slurm.mem:
        rule = retry["out_of_memory"]
        now = memory_mb(slurm.mem)
        new = now * float(rule.get("mem_factor") or 2.0)
        if rule.get("max_mem"):
            new = min(new, memory_mb(rule["max_mem"]))
        if new <= now:
            return None
        return slurm.model_copy(update={"mem": format_memory(new)})
    if state == "TIMEOUT" and retry.get("timeout"):
        rule = retry["timeout"]
        now = parse_walltime(slurm.walltime)
        new = now * float(rule.get("walltime_factor") or 2.0)
        if rule.get("max_walltime"):
            new = min(new, parse_walltime(rule["max_walltime"]))
        if new <= now:
            return None
        return slurm.model_copy(update={"walltime": format_walltime(new)})
    return None


def slim_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """A request for a trigger's kwargs: its batch's jobs by name only.

    The triggerer passes every trigger's kwargs through a pipe to its runner: 100 waits
    each carrying a 1,000-job batch spec (15 MB) deadlocked Airflow 3.3's triggerer (its
    supervisor blocked writing to the runner while the runner blocked writing logs). The
    full spec stays in the submit task's XCom; `restore_request` puts it back."""
    batch = dict(request["batch"])
    batch["job_names"] = [job["name"] for job in batch.pop("jobs")]
    return {**request, "batch": batch}


def slim_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A submitted job's XCom as a trigger's echo: its request `slim_request`ed, unless it
    has none or already is (the submit task pushes it slim)."""
    request = job.get("request")
    if not request or "jobs" not in request.get("batch", {}):
        return dict(job)
    return {**job, "request": slim_request(request)}


def restore_request(
    request: Mapping[str, Any], full_batch: Mapping[str, Any] | None
) -> dict[str, Any]:
    """`slim_request` undone with the batch's full spec (the batch the slim one names is
    that spec restricted to its jobs)."""
    batch = request["batch"]
    if "job_names" not in batch:
        return dict(request)
    full_batch = full_batch or {}
    if "jobs" not in full_batch:
        raise JobForgeError(
            f"batch {batch['batch']}: its jobs' specs are neither in the DAG nor in the submit "
            "task's XCom (give the wait and result tasks the batch spec, as the factory does)"
        )
    full = BatchSpec.from_dict(dict(full_batch))
    spec = restrict_batch(full, batch["job_names"], batch["batch"])
    return {**request, "batch": spec.to_dict()}


def job_names_of(batch: Mapping[str, Any]) -> list[str]:
    """The job names of a batch spec dict, full or slim."""
    if "job_names" in batch:
        return list(batch["job_names"])
    return [job["name"] for job in batch.get("jobs", ())]
