"""What a batch asks SLURM for at run time: DAG-run overrides of the group's parameters and the
raised memory or walltime of a retry after OUT_OF_MEMORY / TIMEOUT. Pure arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow_jobforge.config.fields import parse_walltime
from airflow_jobforge.config.models import SlurmParams
from airflow_jobforge.errors import JobForgeError

OVERRIDABLE = ("partition", "account", "qos", "walltime")


def apply_overrides(slurm: SlurmParams, params: Mapping[str, Any]) -> SlurmParams:
    """DAG-run params that override the group's partition/account/qos/walltime (validated)."""
    update = {k: params[k] for k in OVERRIDABLE if params.get(k) not in (None, "")}
    if not update:
        return slurm
    try:
        return SlurmParams.model_validate({**slurm.model_dump(), **update})
    except ValueError as exc:
        raise JobForgeError(f"invalid DAG run parameter: {exc}") from None


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


def format_walltime(delta: timedelta) -> str:
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
