"""Which jobs one DAG run runs: the `jobs` param's globs, and with `rerun_of` the jobs an
earlier run did not get done. Pure: the operators and `jobforge run` apply it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.rundir import job_state
from airflow_jobforge.rundir.batches import BatchSpec


def selected(names: Iterable[str], patterns: Sequence[str] | None) -> list[str]:
    """Names matching any glob of `patterns`; all names when there are no patterns."""
    names = list(names)
    if not patterns:
        return names
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


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
    wanted = set(kinds)
    return [n for n in names if job_state(earlier.get(n)) in wanted]
