"""Which try of a task instance this is: retries adopt what their series already submitted."""

from __future__ import annotations

from dataclasses import dataclass


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
