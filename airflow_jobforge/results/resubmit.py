"""A new configuration holding the jobs of a run that did not succeed: JADE's resubmit-jobs,
as a file the user runs like any other (`jobforge run`, or a DAG).

Pure: the original configuration, the run's latest records and its expected jobs in; the new
configuration out. A resubmitted job keeps only the blockers that are resubmitted with it:
a blocker that succeeded is done, and one that is not resubmitted cannot be waited for
(the caller is told which non-successful blockers were dropped, so nothing goes unnoticed).
`--set GROUP.SECTION.KEY=VALUE` overrides go through the same pydantic models as a config
file, and every problem of every override is reported at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from airflow_jobforge.config.models import JobConfiguration, SubmissionGroup
from airflow_jobforge.config.validation import ensure_valid
from airflow_jobforge.errors import JobForgeError, Problem
from airflow_jobforge.rundir.records import ResultRecord

CATEGORIES = ("failed", "missing", "canceled")
DEFAULT_CATEGORIES = ("failed", "missing")
# Sections of a submission group an override may reach (`name` may not be renamed).
SECTIONS = tuple(f for f in SubmissionGroup.model_fields if f != "name")


def category(record: ResultRecord | None) -> str | None:
    """Which resubmit category a job's latest record puts it in; None when it succeeded."""
    if record is None or record.status == "missing":
        return "missing"
    if record.status == "canceled":
        return "canceled"
    return None if record.succeeded else "failed"


def select_jobs(
    expected: Iterable[str],
    records: Mapping[str, ResultRecord],
    categories: Sequence[str] = DEFAULT_CATEGORIES,
) -> dict[str, list[str]]:
    """Category -> the expected jobs in it, for the chosen categories, in run order."""
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise JobForgeError(f"unknown categories {unknown}; choose from {', '.join(CATEGORIES)}")
    chosen: dict[str, list[str]] = {c: [] for c in categories}
    for name in expected:
        found = category(records.get(name))
        if found in chosen:
            chosen[found].append(name)
    return chosen


@dataclass(frozen=True)
class Override:
    """`GROUP.SECTION.KEY[.KEY...]=VALUE` as given on the command line."""

    text: str
    group: str
    path: tuple[str, ...]
    value: Any


def parse_value(text: str) -> Any:
    """A JSON list, object or null when it looks like one (`extra`, `bind`, unsetting);
    otherwise the string itself, which pydantic turns into a number or a boolean as needed."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{") or stripped == "null":
        try:
            return json.loads(stripped)
        except ValueError:
            return text
    return text


def parse_overrides(texts: Sequence[str]) -> tuple[list[Override], list[Problem]]:
    overrides: list[Override] = []
    problems: list[Problem] = []
    for text in texts:
        key, sep, value = text.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 3 or not all(parts):
            problems.append(
                Problem(f"--set {text}", "expected GROUP.SECTION.KEY=VALUE, e.g. cpu.slurm.mem=16G")
            )
            continue
        if parts[1] not in SECTIONS:
            problems.append(
                Problem(
                    f"--set {text}",
                    f"unknown section {parts[1]!r}; choose from {', '.join(SECTIONS)}",
                )
            )
            continue
        overrides.append(Override(text, parts[0], tuple(parts[1:]), parse_value(value)))
    return overrides, problems


def apply_overrides(
    groups: Sequence[SubmissionGroup], texts: Sequence[str], known: Iterable[str] = ()
) -> tuple[list[SubmissionGroup], list[str]]:
    """The groups with the overrides applied, and notes on overrides of groups that have no
    job left (`known`: the original config's groups). Raises ConfigError with every problem:
    a malformed override, an unknown group, key or value."""
    overrides, problems = parse_overrides(texts)
    by_name = {g.name: g for g in groups}
    known = set(known) | set(by_name)
    data: dict[str, dict[str, Any]] = {}
    overrides_of: dict[str, list[Override]] = {}
    notes: list[str] = []
    for override in overrides:
        if override.group not in by_name:
            if override.group in known:
                notes.append(f"--set {override.text}: group {override.group!r} has no job left")
            else:
                groups_text = ", ".join(sorted(known))
                problems.append(
                    Problem(
                        f"--set {override.text}",
                        f"no submission group {override.group!r}; groups: {groups_text}",
                    )
                )
            continue
        group_data = data.setdefault(
            override.group, by_name[override.group].model_dump(mode="json", by_alias=True)
        )
        overrides_of.setdefault(override.group, []).append(override)
        _put(group_data, override.path, override.value)
    updated = dict(by_name)
    for name, group_data in data.items():
        try:
            updated[name] = SubmissionGroup.model_validate(group_data)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(str(part) for part in error["loc"])
                reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
                culprits = [o.text for o in overrides_of[name] if _overlaps(o.path, loc)]
                where = ", ".join(f"--set {t}" for t in culprits) or f"group {name!r}"
                problems.append(Problem(where, f"{'.'.join(loc)}: {reason}"))
    if problems:
        raise OverrideError(problems)
    return [updated[g.name] for g in groups], notes


class OverrideError(JobForgeError):
    """Every problem of the `--set` overrides at once."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(
            f"{n} problem{'s' if n != 1 else ''} in --set:\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


def _overlaps(path: Sequence[str], loc: Sequence[str]) -> bool:
    """Whether a validation error at `loc` concerns the override of `path`."""
    n = min(len(path), len(loc))
    return n > 0 and tuple(path[:n]) == tuple(loc[:n])


def _put(data: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set a nested key, making the sections on the way (a group without `retry` yet)."""
    for part in path[:-1]:
        inner = data.get(part)
        if not isinstance(inner, dict):
            inner = {}
            data[part] = inner
        data = inner
    data[path[-1]] = value


@dataclass(frozen=True)
class Resubmission:
    """The new configuration, what was chosen, and what a user must know about it."""

    config: JobConfiguration
    chosen: dict[str, list[str]]
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(len(names) for names in self.chosen.values())

    def describe(self) -> str:
        """One line such as `3 jobs: 2 failed, 1 missing`."""
        parts = [f"{len(names)} {c}" for c, names in self.chosen.items() if names]
        noun = "job" if self.total == 1 else "jobs"
        return f"{self.total} {noun}: {', '.join(parts)}" if parts else f"0 {noun}"


def resubmit_config(
    config: JobConfiguration,
    records: Mapping[str, ResultRecord],
    expected: Iterable[str],
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    overrides: Sequence[str] = (),
    *,
    config_file: str | None = None,
) -> Resubmission:
    """The jobs of the chosen categories as a new configuration (see the module doc).

    Jobs of the run that the configuration does not hold (the file changed since the run)
    are an error: resubmitting a different job under the same name would be a lie."""
    chosen = select_jobs(expected, records, categories)
    selected = {name for names in chosen.values() for name in names}
    by_name = config.jobs_by_name()
    absent = sorted(n for n in selected if n not in by_name)
    if absent:
        raise JobForgeError(
            f"{len(absent)} job(s) of the run are not in the configuration "
            f"(was it changed since the run?): {', '.join(absent[:10])}"
            + (" ..." if len(absent) > 10 else ""),
            file=config_file,
        )
    notes: list[str] = []
    jobs = []
    for job in config.jobs:
        if job.name not in selected:
            continue
        kept = tuple(b for b in job.blocked_by if b in selected)
        dropped = [
            b for b in job.blocked_by if b not in selected and category(records.get(b)) is not None
        ]
        if dropped:
            notes.append(
                f"job {job.name!r}: blocker(s) that did not succeed and are not resubmitted "
                f"are dropped: {', '.join(dropped)}"
            )
        jobs.append(job if kept == job.blocked_by else job.model_copy(update={"blocked_by": kept}))
    used = {job.submission_group for job in jobs}
    groups = [g for g in config.submission_groups if g.name in used]
    groups, override_notes = apply_overrides(
        groups, overrides, known=(g.name for g in config.submission_groups)
    )
    new = config.model_copy(update={"jobs": jobs, "submission_groups": groups})
    ensure_valid(new, file=config_file)
    return Resubmission(new, chosen, tuple(notes + override_notes))
