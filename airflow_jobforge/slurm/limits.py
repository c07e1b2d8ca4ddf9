"""Submission limits: how many batches of a group may be in the queue, how fast sbatch runs.

Two limits, both honoured by every task of a deployment, across restarts:

- `max_concurrent_batches` (per submission group, JADE's `max_nodes`): at most K of a DAG
  run's batches of that group in the SLURM queue (pending or running) at once. The queue is
  the truth: before sbatch the submit task counts the group's jobs of its run there (one
  squeue); at the limit it defers until a slot is free. Nothing to rebuild after a restart.
- `submit_rate_limit` (per cluster, Nextflow's `submitRateLimit`): at most R sbatch calls per
  second. The start time of the last sbatch is kept in a state file.

Counting and sbatch must be one step across concurrent submit tasks, and the rate needs the
time of the last submission: both live under one lock file per cluster (`fcntl.flock`) in
`$JOBFORGE_LIMITS_DIR` (default `$AIRFLOW_HOME/jobforge/limits`). Why on the Airflow side
rather than on the cluster: it costs no round trip (over SSH a remote lock would be one per
submission, held across two more), and flock on a local disk is reliable where flock on the
cluster's NFS often is not. The price: Airflow workers on several hosts must share that
directory (a shared file system with working flock), or each host honours the limits alone.

Only submissions of a group with a limit, or on a cluster with a rate, take the lock; others
pay nothing. Pure: no Airflow, no SLURM; callers hand in the count and the sbatch.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.slurm.script import JOB_NAME_PREFIX

T = TypeVar("T")

LIMITS_DIR_ENV = "JOBFORGE_LIMITS_DIR"
# A lock held longer than this is a stuck process (a hung squeue or sbatch): give up and let
# the task's infrastructure retries try again, rather than hang every submit task forever.
LOCK_TIMEOUT_S = 600.0
LOCK_POLL_S = 0.05
# A waiting batch let through holds a slot until its job shows in the queue, or this long.
RESERVATION_S = 60.0


class LockTimeout(TimeoutError):
    """The limits lock stayed taken for `LOCK_TIMEOUT_S`: an infrastructure error (retried),
    never a verdict on the batch."""


def limits_dir() -> Path:
    """Where the lock and state files live: shared by every task on this host."""
    explicit = os.environ.get(LIMITS_DIR_ENV)
    if explicit:
        return Path(explicit)
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return Path(home) / "jobforge" / "limits"


def cluster_stem(key: Hashable) -> str:
    """A file name for a cluster key (backend, slurm connection, SSH connection)."""
    return "cluster-" + hashlib.sha256(repr(key).encode()).hexdigest()[:16]


def check_rate(rate: float | None, what: str = "submit_rate_limit") -> float | None:
    """None (no limit) or a positive number of sbatch calls per second."""
    if rate is None:
        return None
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise JobForgeError(f"{what} must be a number of sbatch calls per second") from None
    if not value > 0 or value != value or value == float("inf"):
        raise JobForgeError(f"{what} must be a positive number of sbatch calls per second")
    return value


def rate_delay(last_start: float | None, rate: float | None, now: float) -> float:
    """Seconds to wait before the next sbatch so that calls start at least 1/rate apart.

    Never more than one spacing: a clock set back must not stall submissions for hours."""
    if not rate or last_start is None:
        return 0.0
    spacing = 1.0 / rate
    return min(max(last_start + spacing - now, 0.0), spacing)


def group_pattern(run_key: str, group: str) -> re.Pattern[str]:
    """SLURM job names of one DAG run's batches of `group` (`jf-<key>.<group>-<NNNN>.<try>`).
    A pattern rather than a prefix: group `a`'s prefix would also match group `a-b`."""
    return re.compile(re.escape(f"{JOB_NAME_PREFIX}{run_key}.{group}-") + r"[0-9][^.]*\.", re.ASCII)


def group_prefix(run_key: str, group: str) -> str:
    """The name prefix to list with `client.queued` before filtering by `group_pattern`."""
    return f"{JOB_NAME_PREFIX}{run_key}.{group}-"


def count_group_jobs(names: Iterable[str], run_key: str, group: str) -> int:
    pattern = group_pattern(run_key, group)
    return sum(1 for name in names if pattern.match(name))


def batch_group(batch: str) -> str:
    """`<group>-<NNNN>` -> `<group>` (group names may hold dashes; the index never does)."""
    return batch.rsplit("-", 1)[0]


def admitted(waiting: Iterable[str], queued: int, reserved: int, limit: int) -> list[str]:
    """Which waiting batches may go now: the free slots, given in batch order.

    `reserved`: batches let through whose job is not in the queue yet. Letting only as many
    through as there are free slots spares the workers a herd: 90 batches waiting on one
    slot would otherwise all resume, 89 only to defer again."""
    free = limit - queued - reserved
    return sorted(waiting)[: max(free, 0)]


@dataclass
class Reservations:
    """Batches let through, until their job shows in the queue (or `RESERVATION_S`)."""

    ttl_s: float = RESERVATION_S
    given: dict[str, float] = field(default_factory=dict)

    def add(self, batch: str, now: float) -> None:
        self.given[batch] = now

    def count(self, queued_names: Iterable[str], now: float) -> int:
        """Drops the reservations whose batch is queued or that expired; counts the rest."""
        names = tuple(queued_names)
        for batch, since in list(self.given.items()):
            shown = any(f".{batch}." in name for name in names)
            if shown or now - since >= self.ttl_s:
                del self.given[batch]
        return len(self.given)


# --- the gate ----------------------------------------------------------------------------------
def read_last_start(path: Path) -> float | None:
    try:
        value = json.loads(path.read_text())["last_sbatch_start"]
        return float(value)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None  # no submission yet, or a torn file: no wait (at worst one early sbatch)


def write_last_start(path: Path, when: float) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"last_sbatch_start": when}) + "\n")
    os.replace(tmp, path)


@dataclass
class SubmissionGate:
    """The lock and state of one cluster's limits; see the module doc.

    :param cluster: the cluster's key (`ClusterSettings.key`)
    :param rate: sbatch calls per second on that cluster; None: no rate limit
    :param directory: where the lock and state files live (default `limits_dir()`)
    """

    cluster: Hashable
    rate: float | None = None
    directory: Path | None = None
    lock_timeout_s: float = LOCK_TIMEOUT_S
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], object] = time.sleep

    def __post_init__(self) -> None:
        self.rate = check_rate(self.rate)

    @property
    def _base(self) -> Path:
        return (self.directory or limits_dir()) / cluster_stem(self.cluster)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        base = self._base
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f"{base}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JobForgeError(
                f"submission limits: cannot use lock directory {base.parent}: {exc.strerror} "
                f"(set {LIMITS_DIR_ENV} to a writable directory)"
            ) from exc
        try:
            deadline = time.monotonic() + self.lock_timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"submission limits lock {base}.lock still taken after "
                        f"{self.lock_timeout_s:.0f}s"
                    )
                time.sleep(LOCK_POLL_S)
            yield
        finally:
            os.close(fd)  # releases the lock

    def submit(
        self,
        sbatch: Callable[[], T],
        *,
        count: Callable[[], int] | None = None,
        limit: int | None = None,
    ) -> T | None:
        """Run `sbatch` within the limits; None when `count()` says the group is at `limit`
        (nothing submitted: the caller waits for a slot and asks again).

        Without a limit or a rate, `sbatch` runs at once, no lock taken."""
        if not self.rate and (limit is None or count is None):
            return sbatch()
        with self._locked():
            if limit is not None and count is not None and count() >= limit:
                return None
            state = Path(f"{self._base}.json")
            if self.rate:
                delay = rate_delay(read_last_start(state), self.rate, self.clock())
                if delay > 0:
                    self.sleep(delay)
                # Recorded before the call: a process dying inside sbatch still spaces the next.
                write_last_start(state, self.clock())
            return sbatch()
