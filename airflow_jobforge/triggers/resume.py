"""When a trigger may fire: not in the first seconds after its task deferred.

Airflow 3.3's scheduler fails a deferred task whose trigger fires before the scheduler has
processed the executor's report of the worker's exit from `defer()` (apache/airflow#72716,
#71580, #67287): the stale report for the same try arrives while the resumed task is queued
or running, counts as "state changed externally", and the task goes up for retry (15 s and
a whole execution lost) while its resumed try may be half done. Under load that report is
seconds late: measured in this deployment's scheduler log over 1,225 deferrals of the
100,000-job benchmark, median 3.5 s, p90 9 s after the task paused. 5 to 15 waits of each
100-batch run were killed so; 0 and 1 in the two runs after the wait began to check before
deferring (sensors/slurm.py) and its trigger to hold.

So a trigger that a worker's `defer()` started holds its event until `not_before` (the
deferral plus `RESUME_HOLD_S`); a batch ending later costs nothing. `dag.test()` has no
scheduler and no such race: a trigger run without a triggerer's task instance never holds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

RESUME_HOLD_S = 5.0


def not_before(hold_s: float = RESUME_HOLD_S) -> float:
    """The wall-clock time before which a trigger deferred now may not fire (epoch seconds:
    the trigger runs in another process, maybe on another machine)."""
    return time.time() + hold_s


async def hold(trigger: Any, until: float | None) -> float:
    """Sleep until `until` when `trigger` runs in a triggerer; returns the seconds slept."""
    if until is None or getattr(trigger, "task_instance", None) is None:
        return 0.0
    delay = until - time.time()
    if delay <= 0:
        return 0.0
    await asyncio.sleep(delay)
    return delay
