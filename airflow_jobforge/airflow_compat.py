"""Which Airflow 3 this is, and the few names that moved between the minors we support.

jobforge supports Airflow 3.1 and newer (`pyproject.toml`; CI runs the unit and embedded
tests against the oldest, `make oldest`). 3.0 is out: it lacks `airflow.sdk.BaseHook` and
the plugins' `external_views` that the results tab is (both came in 3.1).

Between 3.1 and 3.3 the task exceptions moved from `airflow.exceptions` into the Task SDK
(`airflow.sdk.exceptions`; the old module re-exports them since), the SDK got its own
`configuration` and `plugins_manager`. Everything of jobforge that imports one of these names
imports it from here, so the difference lives in one place. Airflow classes elsewhere stay
plain `airflow.sdk` imports: those exist in every supported minor.

Something that needs a newer Airflow than the one installed calls `require_airflow`, which
raises a `JobForgeError` that names the feature and both versions (the CLI turns that into
exit code 2 and one line, never a traceback).
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from airflow_jobforge.errors import JobForgeError

OLDEST_SUPPORTED = (3, 1)

if TYPE_CHECKING:  # one spelling for the type checker; at run time, whichever exists
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSkipException,
        TaskDeferred,
    )

_EXCEPTIONS = {
    "AirflowException",
    "AirflowFailException",
    "AirflowRescheduleException",
    "AirflowSkipException",
    "TaskDeferred",
}


def __getattr__(name: str) -> Any:
    """The task exceptions, resolved on first use (PEP 562): importing this module imports no
    Airflow, so `require_airflow` can run before an unsupported Airflow fails an import."""
    if name not in _EXCEPTIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from airflow.sdk import exceptions as sdk_exceptions

    value = getattr(sdk_exceptions, name, None)  # Airflow >= 3.2
    if value is None:  # Airflow 3.1: the task runner catches these classes
        from airflow import exceptions

        value = getattr(exceptions, name)
    globals()[name] = value
    return value


__all__ = [
    "OLDEST_SUPPORTED",
    "AirflowException",
    "AirflowFailException",
    "AirflowRescheduleException",
    "AirflowSkipException",
    "TaskDeferred",
    "airflow_version",
    "exponential_backoff",
    "integrate_macros_plugins",
    "require_airflow",
    "require_supported_airflow",
    "sdk_conf",
]


@functools.cache
def airflow_version() -> tuple[int, int, int]:
    """The installed Airflow's (major, minor, patch); (0, 0, 0) when it cannot be read.
    Read once per process: every DAG file's import of `airflow_jobforge.dag` asks."""
    try:
        text = version("apache-airflow-core")
    except PackageNotFoundError:
        try:
            text = version("apache-airflow")
        except PackageNotFoundError:
            return (0, 0, 0)
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    while len(parts) < 3:
        parts.append(0)
    return (parts[0], parts[1], parts[2])


def require_airflow(minimum: tuple[int, int], feature: str) -> None:
    """Raise a clear `JobForgeError` when `feature` needs a newer Airflow than installed."""
    have = airflow_version()
    if have[:2] < minimum:
        raise JobForgeError(
            f"{feature} needs Airflow {minimum[0]}.{minimum[1]} or newer; "
            f"this is Airflow {have[0]}.{have[1]}.{have[2]}"
        )


def exponential_backoff(multiplier: float) -> float | bool:
    """The operator's `retry_exponential_backoff` for a doubling (or steeper) backoff.

    Airflow 3.1 takes a bool (true: the delay doubles per try). Newer ones take the
    multiplier, and there a true would read as 1.0, no backoff at all."""
    from airflow.sdk.bases.operator import BASEOPERATOR_ARGS_EXPECTED_TYPES

    if BASEOPERATOR_ARGS_EXPECTED_TYPES.get("retry_exponential_backoff") is bool:
        return True
    return multiplier


def require_supported_airflow() -> None:
    """Raise a clear `JobForgeError` on an Airflow older than jobforge supports (3.0 lacks
    names jobforge imports: without this, the first of them would fail as an ImportError)."""
    have = airflow_version()
    if have != (0, 0, 0):  # not installed: the import that needs it says so itself
        require_airflow(OLDEST_SUPPORTED, "airflow-jobforge")


def sdk_conf() -> Any:
    """The configuration a task reads (the Task SDK's from 3.2, the core one in 3.1)."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:
        from airflow.configuration import conf
    return conf


def integrate_macros_plugins() -> None:
    """Load the plugins' macros as the Task SDK does before every task."""
    try:
        from airflow.sdk.plugins_manager import integrate_macros_plugins as integrate
    except ImportError:
        from airflow.plugins_manager import integrate_macros_plugins as integrate
    integrate()
