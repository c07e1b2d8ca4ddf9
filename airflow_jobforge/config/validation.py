"""Turn raw config data into a JobConfiguration, or report every problem of it at once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from airflow_jobforge.config.graph import find_cycles
from airflow_jobforge.config.models import JobConfiguration
from airflow_jobforge.errors import ConfigError, Problem


def parse_configuration(data: Any, *, file: str | None = None) -> JobConfiguration:
    """Validate raw data (loaded JSON/TOML); raise ConfigError listing all problems."""
    if not isinstance(data, dict):
        raise ConfigError([Problem("", "the top level must be an object/table")], file=file)
    if "configuration_class" in data or "configuration_module" in data:
        raise ConfigError(
            [
                Problem(
                    "",
                    "this is a JADE configuration; convert it with 'jobforge config import-jade'",
                )
            ],
            file=file,
        )
    problems: list[Problem] = []
    version = str(data.get("format_version", "1.0"))
    if version.split(".")[0] != "1":
        problems.append(Problem("format_version", f"unsupported format version {version!r}"))
    excused_jobs: set[str] = set()
    excused_groups: set[str] = set()
    try:
        config = JobConfiguration.model_validate(data)
    except ValidationError as exc:
        problems.extend(describe_validation_error(exc, data))
        config, excused_jobs, excused_groups = _salvage(data, exc)
    if config is not None:
        problems.extend(
            check_relations(config, excused_jobs=excused_jobs, excused_groups=excused_groups)
        )
    if problems:
        raise ConfigError(problems, file=file)
    assert config is not None
    return config


def ensure_valid(config: JobConfiguration, *, file: str | None = None) -> JobConfiguration:
    """Check relations of a config built in Python (fields were checked on construction)."""
    problems = check_relations(config)
    if problems:
        raise ConfigError(problems, file=file)
    return config


def check_relations(
    config: JobConfiguration,
    *,
    excused_jobs: Iterable[str] = (),
    excused_groups: Iterable[str] = (),
) -> list[Problem]:
    """Problems between jobs and groups.

    `excused_*` name jobs and groups whose fields were already reported broken: a reference
    to a dropped job is not reported again, and a broken group's walltime is not used.
    """
    problems: list[Problem] = []
    excused = set(excused_jobs)
    broken_groups = set(excused_groups)

    group_counts = Counter(g.name for g in config.submission_groups)
    for name, n in group_counts.items():
        if n > 1:
            problems.append(Problem(f"group {name!r}", f"defined {n} times"))
    groups = config.groups_by_name()

    job_counts = Counter(job.name for job in config.jobs)
    for name, n in job_counts.items():
        if n > 1:
            problems.append(Problem(f"job {name!r}", f"name used by {n} jobs"))
    names = set(job_counts)

    for job in config.jobs:
        where = f"job {job.name!r}"
        group = groups.get(job.submission_group or "")
        if job.submission_group is None:
            problems.append(Problem(where, "has no submission_group and there are several groups"))
        elif group is None:
            problems.append(Problem(where, f"unknown submission group {job.submission_group!r}"))
        for blocker in job.blocked_by:
            if blocker == job.name:
                problems.append(Problem(where, "is blocked by itself"))
            elif blocker not in names and blocker not in excused:
                problems.append(Problem(where, f"blocked by unknown job {blocker!r}"))
        if group is None or group.name in broken_groups or job.name in excused:
            continue
        walltime = group.slurm.walltime_delta
        if job.estimated_run_minutes is not None and job.estimated_run_minutes * 60 > (
            walltime.total_seconds()
        ):
            problems.append(
                Problem(
                    where,
                    f"estimated_run_minutes={job.estimated_run_minutes:g} is longer than group "
                    f"{group.name!r} walltime {group.slurm.walltime}",
                )
            )
        if group.batching.time_based_batching and job.estimated_run_minutes is None:
            problems.append(
                Problem(
                    where,
                    f"group {group.name!r} uses time_based_batching, which needs "
                    "estimated_run_minutes on every job",
                )
            )

    order = list(job_counts)
    blockers = {job.name: [b for b in job.blocked_by if b != job.name] for job in config.jobs}
    for cycle in find_cycles(order, blockers):
        problems.append(
            Problem(
                f"job {cycle[0]!r}",
                "dependency cycle: " + " -> ".join(cycle) + " (each is blocked by the next)",
            )
        )
    return problems


def describe_validation_error(exc: ValidationError, data: dict[str, Any]) -> list[Problem]:
    """pydantic errors as problems naming the job or group by name, not by list index."""
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = _where(loc, data)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown field {str(loc[-1])!r}"
            loc = loc[:-1]
            where = _where(loc, data)
        elif err["type"] == "missing":
            msg = f"missing required field {str(loc[-1])!r}"
            loc = loc[:-1]
            where = _where(loc, data)
        problems.append(Problem(where, msg))
    return problems


def _where(loc: list[Any], data: dict[str, Any]) -> str:
    if len(loc) >= 2 and loc[0] in ("jobs", "submission_groups") and isinstance(loc[1], int):
        items = data.get(loc[0])
        kind = "job" if loc[0] == "jobs" else "group"
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        name = item.get("name") if isinstance(item, dict) else None
        label = f"{kind} {name!r}" if isinstance(name, str) else f"{loc[0]}[{loc[1]}]"
        rest = ".".join(str(x) for x in loc[2:])
        return f"{label}: {rest}" if rest else label
    return ".".join(str(x) for x in loc)


def _salvage(
    data: dict[str, Any], exc: ValidationError
) -> tuple[JobConfiguration | None, set[str], set[str]]:
    """The config minus its broken fields, so relations can still be checked and reported.

    A broken job keeps its valid fields (a job with a broken name is dropped); a broken group
    keeps only its name, so group counts and references stay as written. Returns the names
    of broken jobs and groups: checks that depend on their broken parts are skipped.
    """
    bad_fields: dict[tuple[str, int], set[str]] = {}
    bad_keys: set[str] = set()
    for err in exc.errors():
        loc = err["loc"]
        if len(loc) >= 2 and loc[0] in ("jobs", "submission_groups") and isinstance(loc[1], int):
            # (key, i) alone: a rule across the item's fields (a group's spark vs batching)
            bad_fields.setdefault((str(loc[0]), loc[1]), set()).add(str(loc[2:3] and loc[2]))
        elif loc:
            bad_keys.add(str(loc[0]))
    pruned = {k: v for k, v in data.items() if k not in bad_keys}
    excused = {"jobs": set(), "submission_groups": set()}
    for (key, i), fields in bad_fields.items():
        item = data[key][i]
        name = item.get("name")
        if "name" in fields or not isinstance(name, str):
            replacement = None
        elif key == "jobs":
            replacement = {k: v for k, v in item.items() if k not in fields}
            replacement.setdefault("command", "true")
        else:
            replacement = {"name": name}
        if isinstance(name, str):
            excused[key].add(name)
        if key not in pruned:
            continue
        pruned[key] = list(pruned[key])
        pruned[key][i] = replacement
    for key in excused:
        if isinstance(pruned.get(key), list):
            pruned[key] = [x for x in pruned[key] if x is not None]
    try:
        config = JobConfiguration.model_validate(pruned)
    except ValidationError:
        config = None
    return config, excused["jobs"], excused["submission_groups"]
