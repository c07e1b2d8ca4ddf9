"""Walltime awareness: a runner near the end of its allocation starts no job that would not
end in time, instead of starting it only for SLURM to kill it (the job `missing`, its work
lost). What it leaves unstarted, the batch's wait submits again as a continuation.

A job fits when its estimate (`estimated_run_minutes`; without one, the longest run this
runner has seen: the jobs of a group are alike, and the longest is the safe guess) ends
`margin` seconds before the allocation's end. A job that would not fit even in a fresh
allocation of this walltime is started anyway: no continuation could run it, and what a
timeout does to it is the group's `retry.timeout` rule, as without this. Before any job has
ended, a job without an estimate is started: nothing says how long it takes.

The allocation's end comes from SLURM (`SLURM_JOB_END_TIME`, set by SLURM 23.02 and later)
or from the batch script, which exports `JOBFORGE_END_TIME` (its start plus the walltime it
was submitted with: the script starts when the allocation does). Without either (the local
backend, which has no walltime) every job fits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from airflow_jobforge.rundir.batches import JobSpec

END_ENV = ("SLURM_JOB_END_TIME", "JOBFORGE_END_TIME")
WALLTIME_ENV = "JOBFORGE_WALLTIME_S"
END_SLACK_S = 2.0  # the script's clock starts up to a second after the allocation


def allocation_end(env: Mapping[str, str]) -> float | None:
    """The allocation's end as a Unix time; None when nothing says (no walltime)."""
    for name in END_ENV:
        value = env.get(name, "")
        try:
            end = float(value)
        except ValueError:
            continue
        if end > 0:
            return end
    return None


class Walltime:
    """What fits before the allocation ends (see the module doc)."""

    def __init__(
        self,
        end: float | None,
        walltime_s: float | None,
        margin_s: float | None,
        clock: Callable[[], float],
    ) -> None:
        self.end = end if margin_s is not None else None
        self.walltime_s = walltime_s
        self.margin_s = margin_s or 0.0
        self.clock = clock
        self.longest_s: float | None = None
        self.left: list[JobSpec] = []
        """Own jobs not started because they would not fit, in the order they were ready."""

    @classmethod
    def of_allocation(
        cls, margin_s: float | None, clock: Callable[[], float], env: Mapping[str, str]
    ) -> Walltime:
        try:
            walltime_s: float | None = float(env.get(WALLTIME_ENV, ""))
        except ValueError:
            walltime_s = None
        return cls(allocation_end(env), walltime_s, margin_s, clock)

    @property
    def aware(self) -> bool:
        return self.end is not None

    def ran(self, seconds: float) -> None:
        """A job of this runner ran this long: the guess for jobs without an estimate."""
        if self.longest_s is None or seconds > self.longest_s:
            self.longest_s = seconds

    def _need(self, job: JobSpec) -> float | None:
        return job.estimate_s if job.estimate_s is not None else self.longest_s

    def fits(self, job: JobSpec) -> bool:
        """Whether to start `job` now."""
        return self.fit_all((job,))

    def fit_all(self, jobs: Iterable[JobSpec]) -> bool:
        """Whether these jobs, run one after the other from now, end in time (a chunk taken
        from another batch: once taken, its jobs are this runner's to run)."""
        if self.end is None:
            return True
        total = 0.0
        for job in jobs:
            need = self._need(job)
            if need is None:
                continue
            if self.walltime_s is not None and need > self.walltime_s - self.margin_s:
                continue  # fits no allocation of this walltime: see the module doc
            total += need
        return total == 0.0 or self.clock() + total <= self.end - self.margin_s

    def at_end(self) -> bool:
        """Whether the allocation's end has come (a SIGTERM now is SLURM's at the walltime,
        which it sends up to a minute late, never early)."""
        return self.end is not None and self.clock() >= self.end - END_SLACK_S

    def time_left_s(self) -> float | None:
        return None if self.end is None else self.end - self.clock()
