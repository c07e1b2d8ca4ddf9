"""Formats of single values (names, walltime, memory, gres): the models and the sbatch
script share them.

Kept apart from the models so that the sbatch script builder can re-check values it is handed
programmatically: anything that reaches an sbatch script must have passed these.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator

# Airflow task ids allow [A-Za-z0-9_.-]; file names forbid "/" and NUL. We take the ASCII
# intersection and forbid a leading "." or "-" so that a name is never a hidden file or an option.
_JOB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
# TaskGroup ids may not contain "." (Airflow uses it to join group and task ids).
_GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")
# account / partition / qos / reservation: SLURM identifiers. Commas allowed for lists.
_SLURM_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,+-]{0,199}")
_MEMORY = re.compile(r"[0-9]+[KMGT]?")
# gres: comma-separated name[:type][:count] items, e.g. gpu:2, gpu:a100:1, shard:4, gres/gpu:1
_GRES_ITEM = re.compile(r"(gres/)?[A-Za-z][A-Za-z0-9_]*(:[A-Za-z0-9_.-]+)?(:[0-9]+[KMG]?)?")
# constraint expressions: features joined by & | , with [] () * counts; no spaces or quotes.
_CONSTRAINT = re.compile(r"[A-Za-z0-9_&|,\[\]()*!.:-]{1,500}")
# an extra sbatch option: --long-name or --long-name=value, the value without control chars.
_EXTRA_OPTION = re.compile(r"--[a-z][a-z0-9-]*(=[^\x00-\x1f\x7f]*)?")
_WALLTIME = re.compile(
    r"(?:(?P<days>[0-9]+)-(?P<dh>[0-9]+)(?::(?P<dm>[0-9]+)(?::(?P<ds>[0-9]+))?)?"
    r"|(?P<a>[0-9]+)(?::(?P<b>[0-9]+)(?::(?P<c>[0-9]+))?)?)"
)

# Options the script builder owns: letting a config set them would break adoption or result paths.
RESERVED_SBATCH_OPTIONS = frozenset(
    {
        "--output",
        "--error",
        "--job-name",
        "--comment",
        "--parsable",
        "--wrap",
        "--chdir",
        "--export",
        "--array",
        "--dependency",
        "--wait",
        "--test-only",
    }
)


def check_job_name(value: str) -> str:
    if not _JOB_NAME.fullmatch(value) or value in {".", ".."}:
        raise ValueError(
            f"{value!r} is not a valid job name: use 1-200 of A-Z a-z 0-9 _ . - "
            "(not starting with . or -); it must serve as an Airflow task id and a file name"
        )
    return value


def check_group_name(value: str) -> str:
    if not _GROUP_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid submission group name: use 1-100 of A-Z a-z 0-9 _ - "
            "(it becomes an Airflow TaskGroup id)"
        )
    return value


def check_slurm_word(value: str) -> str:
    if not _SLURM_WORD.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid SLURM name (A-Z a-z 0-9 _ . , + -)")
    return value


def check_memory(value: str) -> str:
    if not _MEMORY.fullmatch(value):
        raise ValueError(f"{value!r} is not a SLURM size: an integer with optional K/M/G/T")
    return value


def check_gres(value: str) -> str:
    items = value.split(",")
    if not value or not all(_GRES_ITEM.fullmatch(item) for item in items):
        raise ValueError(
            f"{value!r} is not a valid gres: comma-separated name[:type][:count], e.g. gpu:a100:2"
        )
    return value


def check_constraint(value: str) -> str:
    if not _CONSTRAINT.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid constraint expression")
    return value


def check_extra_option(value: str) -> str:
    if not _EXTRA_OPTION.fullmatch(value):
        raise ValueError(f"{value!r} is not an sbatch option of the form --key or --key=value")
    key = value.split("=", 1)[0]
    if key in RESERVED_SBATCH_OPTIONS:
        raise ValueError(f"{key} is set by jobforge itself and cannot be overridden")
    return value


def parse_walltime(value: str) -> timedelta:
    """Parse every SLURM --time form: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    m = _WALLTIME.fullmatch(value.strip())
    if not m:
        raise ValueError(
            f"{value!r} is not a SLURM walltime (M, M:S, H:M:S, D-H, D-H:M or D-H:M:S)"
        )
    g = m.groupdict()
    if g["days"] is not None:
        return timedelta(
            days=int(g["days"]),
            hours=int(g["dh"]),
            minutes=int(g["dm"] or 0),
            seconds=int(g["ds"] or 0),
        )
    parts = [int(x) for x in (g["a"], g["b"], g["c"]) if x is not None]
    if len(parts) == 1:
        return timedelta(minutes=parts[0])
    if len(parts) == 2:
        return timedelta(minutes=parts[0], seconds=parts[1])
    return timedelta(hours=parts[0], minutes=parts[1], seconds=parts[2])


def check_walltime(value: str) -> str:
    parse_walltime(value)
    return value


JobName = Annotated[str, AfterValidator(check_job_name)]
GroupName = Annotated[str, AfterValidator(check_group_name)]
SlurmWord = Annotated[str, AfterValidator(check_slurm_word)]
Memory = Annotated[str, AfterValidator(check_memory)]
Gres = Annotated[str, AfterValidator(check_gres)]
Constraint = Annotated[str, AfterValidator(check_constraint)]
ExtraOption = Annotated[str, AfterValidator(check_extra_option)]
Walltime = Annotated[str, AfterValidator(check_walltime)]
