"""Runs one batch's jobs on a compute node, `num_processes` at a time.

Event-driven, no polling sleep: SIGCHLD, SIGTERM and SIGINT all write to one wake-up pipe
(`signal.set_wakeup_fd`), and the loop blocks on it. A child that exits before we block has
already written its byte, so no exit is missed.

On SIGTERM/SIGINT (scancel, walltime, an Airflow kill) the runner terminates its children's
process groups, records running jobs as `missing` and never-started ones as `canceled`, runs
the node teardown, and exits 128+signal: every job of the batch ends with exactly one record.

A full (or read-only) output dir must not cost the batch: the runner keeps going, holds the
records it could not write and retries them with every later record (space may come back),
says so on stderr once with the path and the error, prints the records it finally could not
write to stderr (which may live on another file system), and exits EXIT_OUTPUT_UNWRITABLE, so
whoever reads the exit code knows why records are missing. A job whose output files cannot be
created is not started and recorded `missing` with that reason.

Starting a job costs what xargs pays and little more: the runner opens the job's two output
files (each job must have them, even empty), then `os.posix_spawn` (vfork + exec in glibc,
no fork of a big Python process, no fd sweep, no error pipe) runs it in a new session with
stdin on /dev/null and the signals Python ignores (SIGPIPE, SIGXFSZ) back to default, as
`subprocess.Popen(start_new_session=True)` would; inherited descriptors are made
close-on-exec once at start instead of swept per job. The environment is built once and only
JOBFORGE_JOB_NAME changes per job; bash is looked up in PATH once. Where posix_spawn cannot
start a session (glibc < 2.26) the runner falls back to Popen. Ended jobs are reaped with
`wait4(-1)`, one call per ended child whatever `num_processes` is: the runner owns its
process and every child of it is a job (or a node setup/teardown command).

Each record is written when its job is reaped, before the runner sleeps again: one `write`
(~1 µs) on an O_APPEND descriptor. Holding records to batch the writes would save < 1 % of a
job's launch and cost the guarantee that a record is on disk once its job has ended (a live
`jobforge results show`, a SIGKILL of the runner), so it is not done.

Each job is reaped with wait4, so its record carries the host, its peak RSS (the largest
process of its tree, as the kernel counts it) and its CPU time (the job's and the
descendants it waited for): exact figures, monitor or not, at no extra cost. One catch: at
exec the kernel counts the launching memory's high-water mark into the job's peak, and
posix_spawn launches with vfork, i.e. from the runner's own memory, so every job would show
the runner's peak (which a big batch file makes large). The runner resets its high-water
mark to its current RSS before each launch (/proc/self/clear_refs, < 1 µs), so a job's
`max_rss_bytes` is exact above the runner's current RSS (~15 MB) and that figure below.

With a monitor interval the loop also wakes when a sample is due (`node.monitor`). Node-side
events (batch started, node setup failed, job failed) go to the run's event log, best effort.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import select
import signal
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_jobforge.node.containers import ContainerUnavailable, JobContainers
from airflow_jobforge.node.monitor import ResourceMonitor
from airflow_jobforge.node.say import say
from airflow_jobforge.node.schedule import JobGraph
from airflow_jobforge.node.sharing import WorkSharing
from airflow_jobforge.node.spark import SparkCluster, SparkStartError
from airflow_jobforge.node.walltime import Walltime
from airflow_jobforge.rundir import (
    EXIT_OUTPUT_UNWRITABLE,
    NOT_WRITABLE,
    ResultRecord,
    ResultsWriter,
    collect_results,
    results_file,
)
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.rundir.claims import shared_results_file
from airflow_jobforge.rundir.events import (
    BATCH_STARTED,
    BATCH_SURPLUS_CANCELLED,
    JOB_FAILED,
    JOBS_LEFT,
    NODE_SETUP_FAILED,
    SPARK_CLUSTER_FAILED,
    SPARK_CLUSTER_READY,
    EventLog,
)
from airflow_jobforge.rundir.spark import write_cluster_info

if TYPE_CHECKING:
    import subprocess

JOB_OUTPUT_DIR = "job-output"
KILL_GRACE_S = 5.0
TEARDOWN_TIMEOUT_S = 60.0

EXIT_OK = 0
EXIT_JOBS_FAILED = 1

# What subprocess.Popen(restore_signals=True) puts back to default in a child: Python ignores
# them, and an ignored signal stays ignored across exec (a job's `yes | head` must not loop).
_RESET_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)
_OUTPUT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC

# (pid, exit code as Popen gives it: -N for signal N, rusage or None when unknown)
Ended = tuple[int, int, "resource.struct_rusage | None"]


def default_num_processes() -> int:
    slurm_cpus = os.environ.get("SLURM_CPUS_ON_NODE", "")
    if slurm_cpus.isdigit() and int(slurm_cpus) > 0:
        return int(slurm_cpus)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def job_argv(job: JobSpec) -> list[str]:
    """bash for generic commands; other extensions say how their jobs start."""
    if job.extension == "generic_command":
        return ["bash", "-c", job.command]
    # Only batches of other extensions pay for the registry (importlib.metadata, entry points):
    # the runner starts on every batch's node.
    from airflow_jobforge.extensions.registry import Registry

    return list(Registry().get_extension_class(job.extension, "execution").argv(job))


@dataclass(slots=True)
class _Running:
    job: JobSpec
    start: float
    owner: str | None = None
    """The batch whose job this is, when another batch's (work sharing)."""


def _above_stdio(fd: int) -> int:
    """A descriptor >= 3: a runner started with stdin/stdout/stderr closed gets 0-2 from open,
    and dup2-ing those onto 0-2 in the child would mix them up or keep them close-on-exec."""
    if fd > 2:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)


def _close_inherited_on_exec() -> None:
    """Popen's close_fds sweep, once per batch instead of once per job: descriptors the runner
    inherited (from slurmstepd, a shell) beyond 0-2 must not leak into jobs. Python's own are
    close-on-exec already (PEP 446)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: jobs may inherit what the runner inherited
        return
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the listing's own descriptor, closed by now
                pass


class _Launcher:
    """Starts a process in its own session with stdin on /dev/null and stdout/stderr on the
    given descriptors: `os.posix_spawn` where the C library can start a session (glibc >=
    2.26), `subprocess.Popen` elsewhere, same result. `env` is read at each start."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self._programs: dict[str, str] = {}
        self._devnull = -1  # opened with the first start
        self._popen: dict[int, subprocess.Popen[bytes]] | None = (
            None if hasattr(os, "posix_spawn") else {}
        )

    def start(self, argv: list[str], out: int, err: int) -> int:
        if self._devnull < 0:
            self._devnull = _above_stdio(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        if self._popen is None:
            try:
                return os.posix_spawn(
                    self._program(argv[0]),
                    argv,
                    self.env,
                    file_actions=(
                        (os.POSIX_SPAWN_DUP2, self._devnull, 0),
                        (os.POSIX_SPAWN_DUP2, out, 1),
                        (os.POSIX_SPAWN_DUP2, err, 2),
                    ),
                    setsid=True,
                    setsigdef=_RESET_SIGNALS,
                )
            except NotImplementedError:  # no POSIX_SPAWN_SETSID in this C library
                self._popen = {}
        import subprocess

        proc = subprocess.Popen(
            argv,
            stdin=self._devnull,
            stdout=out,
            stderr=err,
            env=self.env,
            start_new_session=True,
        )
        self._popen[proc.pid] = proc
        return proc.pid

    def reaped(self, pid: int, code: int) -> None:
        """We waited for `pid`: a Popen of the fallback must not wait for it again."""
        if self._popen:
            proc = self._popen.pop(pid, None)
            if proc is not None:
                proc.returncode = code

    def _program(self, name: str) -> str:
        """PATH lookup as exec*p does it, with the jobs' PATH, once per program: a miss is
        looked up again (a job may install it), a hit is kept."""
        if os.sep in name:
            return name
        found = self._programs.get(name)
        if found is None:
            for directory in os.get_exec_path(self.env):
                candidate = os.path.join(directory, name)
                if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
                    found = self._programs[name] = candidate
                    break
            else:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        return found

    def close(self) -> None:
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1


# Signals scancel (and a walltime's end) sends to every process of a job step.
STEP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGHUP})
STEP_SIGNAL_SETTLE_S = 0.5


def _terminated(wake: _Wakeup) -> str:
    return f"batch terminated by {signal.Signals(wake.terminated_by or signal.SIGTERM).name}"


class _Wakeup:
    """Signals -> bytes on a pipe; the runner blocks on the pipe only."""

    HANDLED = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.terminated_by: int | None = None
        self._old_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        self._old_handlers = {s: signal.signal(s, self._handle) for s in self.HANDLED}

    def _handle(self, signum: int, _frame: object) -> None:
        if signum != signal.SIGCHLD and self.terminated_by is None:
            self.terminated_by = signum

    def wait(self, timeout: float | None = None) -> None:
        select.select([self.read_fd], [], [], timeout)
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def settle(self, seconds: float) -> None:
        """Wait up to `seconds` for a terminating signal of our own."""
        deadline = time.monotonic() + seconds
        while self.terminated_by is None and (left := deadline - time.monotonic()) > 0:
            self.wait(left)

    def close(self) -> None:
        for s, handler in self._old_handlers.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(self._old_fd)
        os.close(self.read_fd)
        os.close(self.write_fd)


class BatchRunner:
    def __init__(
        self,
        spec: BatchSpec,
        output_dir: str | os.PathLike[str],
        num_processes: int | None = None,
        clock: Callable[[], float] = time.time,
        monitor_interval_s: float | None = None,
    ) -> None:
        self.spec = spec
        self.output_dir = Path(output_dir).resolve()
        self.num_processes = max(1, num_processes or spec.num_processes or default_num_processes())
        self.clock = clock
        self.hpc_job_id = os.environ.get("SLURM_JOB_ID")
        self.events = EventLog(self.output_dir, f"batch-{spec.batch}")
        self.host = self.events.host
        self.monitor_interval_s = (
            spec.monitor_interval_s if monitor_interval_s is None else monitor_interval_s
        )
        self.monitor: ResourceMonitor | None = None
        self._clear_refs: int | None = None
        self._job_output = str(self.output_dir / JOB_OUTPUT_DIR)
        self._launcher = _Launcher({})  # the real environment comes with `run`
        self.results_path = results_file(self.output_dir, spec.batch)
        self.writer: ResultsWriter | None = None
        self._shared_writers: dict[str, ResultsWriter] = {}
        self.unwritten: list[ResultRecord] = []  # in order; retried with every new record
        self.write_error: OSError | None = None
        self.recorded: set[str] = set()
        self.any_failed = False
        self.spark: SparkCluster | None = None
        self.containers: JobContainers | None = None
        self.sharing = WorkSharing(self) if spec.share and spec.group else None
        self.walltime = Walltime.of_allocation(spec.walltime_margin_s, clock, os.environ)

    # --- records ---------------------------------------------------------------------------
    def _record(
        self,
        job: JobSpec,
        status: str,
        return_code: int | None,
        start: float | None,
        reason: str | None = None,
        usage: resource.struct_rusage | None = None,
        owner: str | None = None,
    ) -> None:
        end = self.clock()
        self.unwritten.append(
            ResultRecord(
                name=job.name,
                status=status,  # type: ignore[arg-type]
                return_code=return_code,
                exec_time_s=round(end - start, 6) if start is not None else 0.0,
                start=start,
                end=end,
                batch=owner or self.spec.batch,
                hpc_job_id=self.hpc_job_id,
                reason=reason,
                host=self.host if start is not None else None,
                # ru_maxrss is in KiB on Linux
                max_rss_bytes=usage.ru_maxrss * 1024 if usage is not None else None,
                cpu_time_s=(
                    round(usage.ru_utime + usage.ru_stime, 6) if usage is not None else None
                ),
                spark_apps=(
                    self.spark.apps_of(job.name, start) or None
                    if self.spark is not None and start is not None
                    else None
                ),
                ran_in=self.spec.batch if owner else None,
            )
        )
        self._flush()
        self.recorded.add(job.name)
        if not (status == "finished" and return_code == 0):
            self.any_failed = True
            if status != "canceled":  # canceled jobs never ran: their cause has its event
                self.events.emit(
                    JOB_FAILED,
                    batch=self.spec.batch,
                    job=job.name,
                    hpc_job_id=self.hpc_job_id,
                    message=reason or f"exit code {return_code}",
                    data={"return_code": return_code, "reason": reason},
                )

    def _flush(self) -> None:
        """Write the held records in order; on the first failure report it once and keep them."""
        try:
            while self.unwritten:
                self._writer_for(self.unwritten[0]).append(self.unwritten[0])
                self.unwritten.pop(0)
        except OSError as exc:
            if self.write_error is None:
                say(
                    f"cannot write result records to {self.results_path}: {_oserror(exc)}; "
                    "jobs keep running, records are retried"
                )
            self.write_error = exc

    def _writer_for(self, record: ResultRecord) -> ResultsWriter:
        """The batch's own file; another batch's job (work sharing) goes to a file of its
        owner's that this runner alone writes (rundir.claims)."""
        if record.ran_in is None:
            if self.writer is None:
                self.writer = ResultsWriter(self.results_path)
            return self.writer
        path = shared_results_file(self.output_dir, record.batch, self.spec.batch)
        writer = self._shared_writers.get(record.batch)
        if writer is None:
            writer = self._shared_writers[record.batch] = ResultsWriter(path)
        return writer

    def _report_unwritten(self) -> None:
        """Last resort for records the output dir never took: stderr, one JSON line each."""
        if not self.unwritten or self.write_error is None:
            return
        names = ", ".join(r.name for r in self.unwritten[:10])
        more = f" and {len(self.unwritten) - 10} more" if len(self.unwritten) > 10 else ""
        say(
            f"{NOT_WRITABLE}: {len(self.unwritten)} result records of batch {self.spec.batch} "
            f"could not be written to {self.results_path} ({_oserror(self.write_error)}): "
            f"{names}{more}"
        )
        for record in self.unwritten:
            say(f"unwritten record: {record.to_json()}")

    # --- processes -------------------------------------------------------------------------
    def _job_env(self) -> dict[str, str]:
        """Built once: only JOBFORGE_JOB_NAME changes from job to job (set by `_spawn`)."""
        env = dict(os.environ)
        env.update(self.spec.env)
        env["JOBFORGE_OUTPUT_DIR"] = str(self.output_dir)
        env["JOBFORGE_BATCH"] = self.spec.batch
        return env

    def _spawn(self, name: str, argv: list[str]) -> int:
        """Start a job (or node command) on its fresh output files; its pid."""
        base = self._job_output
        out = _above_stdio(os.open(f"{base}/{name}.out", _OUTPUT_FLAGS, 0o666))
        try:
            err = _above_stdio(os.open(f"{base}/{name}.err", _OUTPUT_FLAGS, 0o666))
            try:
                if self._clear_refs is not None:
                    try:
                        os.write(self._clear_refs, b"5")  # peak RSS := current; see docstring
                    except OSError:
                        pass
                self._launcher.env["JOBFORGE_JOB_NAME"] = name
                return self._launcher.start(argv, out, err)
            finally:
                os.close(err)
        finally:
            os.close(out)

    def _reaped(self, ours: Collection[int]) -> list[Ended]:
        """Every child that has ended, without blocking; those not in `ours` are dropped.

        No child left at all while some of ours run means someone else reaped them: they
        ended, and like Popen we say with 0 and no rusage."""
        ended: list[Ended] = []
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                seen = {e[0] for e in ended}
                ended += [(pid, 0, None) for pid in ours if pid not in seen]
                return ended
            if pid == 0:
                return ended
            code = os.waitstatus_to_exitcode(status)
            self._launcher.reaped(pid, code)
            if pid in ours:
                ended.append((pid, code, usage))
            elif self.spark is not None:
                self.spark.reaped(pid, code)

    @staticmethod
    def _signal_group(pid: int, signum: int) -> None:
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _stop_all(self, pids: Collection[int], wake: _Wakeup) -> dict[int, Ended]:
        """SIGTERM every process group, SIGKILL what is left after the grace period; how each
        ended, by pid."""
        left = set(pids)
        ended: dict[int, Ended] = {}

        def reap() -> None:
            for e in self._reaped(left):
                left.discard(e[0])
                ended[e[0]] = e

        for pid in left:
            self._signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_S
        reap()
        while left and time.monotonic() < deadline:
            wake.wait(max(0.0, deadline - time.monotonic()))
            reap()
        for pid in left:
            self._signal_group(pid, signal.SIGKILL)
        for pid in left:
            try:
                _, status, usage = os.wait4(pid, 0)
            except ChildProcessError:
                ended[pid] = (pid, 0, None)
                continue
            code = os.waitstatus_to_exitcode(status)
            self._launcher.reaped(pid, code)
            ended[pid] = (pid, code, usage)
        return ended

    def _run_node_command(
        self, label: str, command: str, wake: _Wakeup, timeout: float | None = None
    ) -> int | None:
        """Run node setup/teardown to completion; None if it was stopped by a signal/timeout."""
        pid = self._spawn(f"_{label}_{self.spec.batch}", ["bash", "-c", command])
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for _, code, _ in self._reaped((pid,)):
                return code
            expired = deadline is not None and time.monotonic() >= deadline
            if wake.terminated_by is not None and label != "node_teardown" or expired:
                self._stop_all([pid], wake)
                return None
            wake.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # --- main loop -------------------------------------------------------------------------
    def run(self) -> int:
        self._prepare()
        wake = _Wakeup()
        try:
            code = self._run(wake)
        finally:
            self._close(wake)
        if self.unwritten and wake.terminated_by is None:
            return EXIT_OUTPUT_UNWRITABLE
        return code

    def _prepare(self) -> None:
        try:
            (self.output_dir / JOB_OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # each job then says it could not start, and why
            say(f"cannot create {self.output_dir / JOB_OUTPUT_DIR}: {_oserror(exc)}")
        self.events.emit(
            BATCH_STARTED,
            batch=self.spec.batch,
            hpc_job_id=self.hpc_job_id,
            data={
                "jobs": len(self.spec.jobs),
                "num_processes": self.num_processes,
                "nodes": _allocation_nodes(),
                "monitor_interval_s": self.monitor_interval_s,
            },
        )
        if self.monitor_interval_s > 0:
            self.monitor = ResourceMonitor(
                self.output_dir,
                self.spec.batch,
                self.monitor_interval_s,
                host=self.host,
                hpc_job_id=self.hpc_job_id,
            )
        self._prepare_launches()

    def _prepare_launches(self) -> None:
        try:
            self._clear_refs = os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:  # not Linux, or a kernel before 4.0: jobs' peaks include the runner's
            pass
        _close_inherited_on_exec()
        self._launcher.env = self._job_env()

    def _close(self, wake: _Wakeup) -> None:
        if self.monitor is not None:
            self.monitor.close()
        if self.spark is not None:
            self._stop_spark(self.spark)
        teardown = self.spec.node_teardown_command
        if teardown:
            try:
                self._run_node_command("node_teardown", teardown, wake, TEARDOWN_TIMEOUT_S)
            except OSError as exc:
                say(f"node teardown not started: {_oserror(exc)}")
        if self.containers is not None:
            self.containers.close()
        wake.close()
        self._launcher.close()
        if self._clear_refs is not None:
            os.close(self._clear_refs)
        self._flush()
        self._report_unwritten()
        for writer in (self.writer, *self._shared_writers.values()):
            if writer is not None:
                writer.close()

    def _run(self, wake: _Wakeup) -> int:
        setup = self.spec.node_setup_command
        if setup and not self._node_setup(setup, wake):
            return self._exit_code(wake)
        if self.spec.spark is not None and not self._start_spark(wake):
            return self._exit_code(wake)
        if self.spec.container is not None and not self._prepare_containers():
            return self._exit_code(wake)
        graph = JobGraph(self.spec.jobs, self.recorded, self._cancel)
        graph.start(self._failed_external_blockers())
        running: dict[int, _Running] = {}
        sharing = self.sharing
        while wake.terminated_by is None:
            self._start_ready(graph, running)
            if sharing is not None and not graph.ready and len(running) < self.num_processes:
                self._start_others(sharing, running)
            if not running:  # every job that was ready failed to start; its dependants too
                if graph.ready:
                    continue
                break
            self._await_ended(graph, running, wake)
        if wake.terminated_by is not None:
            self._terminate(running, wake)
        else:
            self._ended_normally()
        return self._exit_code(wake)

    def _ended_normally(self) -> None:
        """What the batch's wait and the group's other batches learn from a batch that ran
        to its end: the jobs it left for its walltime, the pending batches with no work left."""
        if self.walltime.left:
            self._left_for_walltime()
        if self.sharing is not None and self.hpc_job_id:
            for batch, job_id in self.sharing.cancel_surplus(self.hpc_job_id):
                self.events.emit(
                    BATCH_SURPLUS_CANCELLED,
                    batch=batch,
                    hpc_job_id=job_id,
                    message=f"pending SLURM job {job_id} canceled: other batches ran its jobs",
                    data={"by": self.spec.batch},
                )

    def _node_setup(self, command: str, wake: _Wakeup) -> bool:
        """Whether the jobs may run; if not, each is recorded canceled with the reason."""
        rc, reason = self._run_node_setup(command, wake)
        if rc == 0:
            return True
        if wake.terminated_by is None:
            self.events.emit(
                NODE_SETUP_FAILED,
                batch=self.spec.batch,
                hpc_job_id=self.hpc_job_id,
                message=reason,
                data={"return_code": rc},
            )
        self._cancel_unrun(reason)
        return False

    def _run_node_setup(self, command: str, wake: _Wakeup) -> tuple[int | None, str]:
        """Its exit code (None: not started, or stopped) and what its failure is recorded as."""
        try:
            rc = self._run_node_command("node_setup", command, wake)
        except OSError as exc:
            return None, f"node setup not started: {_oserror(exc)}"
        if rc is None:
            return None, "batch terminated during node setup"
        return rc, f"node setup command failed with exit code {rc}"

    def _start_others(self, sharing: WorkSharing, running: dict[int, _Running]) -> None:
        """Free slots, nothing of our own ready: the group's other batches' ready jobs."""
        monitor = self.monitor
        while len(running) < self.num_processes:
            taken = sharing.next_job(self.walltime.fit_all)
            if taken is None:
                return
            owner, job = taken
            try:
                pid = self._spawn(job.name, self._job_argv(job))
            except OSError as exc:
                self._record(
                    job, "missing", None, None, f"not started: {_oserror(exc)}", owner=owner
                )
                continue
            running[pid] = _Running(job, self.clock(), owner)
            if monitor is not None:
                pidfile = self.containers.pidfile(job.name) if self.containers else None
                monitor.job_started(pid, job.name, pidfile=pidfile)

    def _job_argv(self, job: JobSpec) -> list[str]:
        if self.spark is not None:
            self._launcher.env["SPARK_CONF_DIR"] = self.spark.job_conf_dir(job.name)
        argv = job_argv(job)
        if self.containers is not None:
            argv = self.containers.argv(job.name, argv)
        return argv

    def _prepare_containers(self) -> bool:
        """The jobs' runtime and image are on this node; if not, every job is recorded
        canceled with why (one clear reason instead of one failure per job)."""
        assert self.spec.container is not None
        env = self._launcher.env
        self.containers = JobContainers(
            self.spec.container, self.spec.batch, self.output_dir, env, tuple(self.spec.env)
        )
        try:
            self.containers.prepare(env)
        except ContainerUnavailable as exc:
            reason = str(exc)
            self.events.emit(
                NODE_SETUP_FAILED, batch=self.spec.batch, hpc_job_id=self.hpc_job_id, message=reason
            )
            self._cancel_unrun(reason)
            return False
        return True

    def _remove_container(self, job: JobSpec) -> None:
        if self.containers is not None:
            problem = self.containers.cleanup(job.name)
            if problem:
                say(f"container of job {job.name} not removed: {problem}")

    def _start_spark(self, wake: _Wakeup) -> bool:
        """The batch's Spark cluster up; if not, every job is recorded canceled with why."""
        assert self.spec.spark is not None
        self.spark = SparkCluster(self.spec.spark, self.output_dir, self.spec.batch, sys.executable)

        def pause(seconds: float) -> bool:
            wake.wait(seconds)
            return wake.terminated_by is None

        try:
            info = self.spark.start(pause)
        except SparkStartError as exc:
            return self._spark_failed(str(exc), wake)
        except OSError as exc:
            return self._spark_failed(f"Spark cluster not started: {_oserror(exc)}", wake)
        except ValueError as exc:  # a size the config should have refused
            return self._spark_failed(f"Spark cluster not started: {exc}", wake)
        self._write_cluster_info()
        self.events.emit(
            SPARK_CLUSTER_READY,
            batch=self.spec.batch,
            hpc_job_id=self.hpc_job_id,
            message=f"{info.workers_alive} workers at {info.master_url} in {info.start_s:g} s",
            data=info.to_dict(),
        )
        self._launcher.env.update(self.spark.env())
        return True

    def _spark_failed(self, reason: str, wake: _Wakeup) -> bool:
        if wake.terminated_by is None:
            self.events.emit(
                SPARK_CLUSTER_FAILED,
                batch=self.spec.batch,
                hpc_job_id=self.hpc_job_id,
                message=reason,
            )
        self._cancel_unrun(reason)
        return False

    def _stop_spark(self, spark: SparkCluster) -> None:
        try:
            info = spark.stop()
        except OSError as exc:
            say(f"Spark cluster stop: {_oserror(exc)}")
            return
        if info is not None:
            self._write_cluster_info()
            if info.leftover:
                say(f"Spark processes left after the stop: {', '.join(info.leftover)}")
        if spark.lost:
            say(spark.lost)

    def _write_cluster_info(self) -> None:
        if self.spark is None or self.spark.info is None:
            return
        try:
            write_cluster_info(self.output_dir, self.spark.info)
        except OSError as exc:
            say(f"cannot write the Spark cluster file: {_oserror(exc)}")

    def _start_ready(self, graph: JobGraph, running: dict[int, _Running]) -> None:
        monitor = self.monitor
        while graph.ready and len(running) < self.num_processes:
            job = graph.take()
            if self.sharing is not None and self.sharing.known_away(job):
                continue
            if not self.walltime.fits(job):
                self.walltime.left.append(job)  # neither it nor its dependants start here
                continue
            if self.sharing is not None and not self.sharing.own(job):
                continue  # another batch claimed it: it runs (and is recorded) there
            try:
                pid = self._spawn(job.name, self._job_argv(job))
            except OSError as exc:
                self._record(job, "missing", None, None, f"not started: {_oserror(exc)}")
                graph.release(job.name, False)
                continue
            running[pid] = _Running(job, self.clock())
            if monitor is not None:
                pidfile = self.containers.pidfile(job.name) if self.containers else None
                monitor.job_started(pid, job.name, pidfile=pidfile)

    def _await_ended(self, graph: JobGraph, running: dict[int, _Running], wake: _Wakeup) -> None:
        monitor = self.monitor
        wake.wait(None if monitor is None else monitor.seconds_until_due())
        if wake.terminated_by is not None:
            return
        for pid, rc, usage in self._ended(running, wake):
            r = running.pop(pid)
            if monitor is not None:
                monitor.job_ended(pid)
            if wake.terminated_by is not None and -rc in STEP_SIGNALS:
                self._remove_container(r.job)
                self._record(
                    r.job, "missing", None, r.start, _terminated(wake), usage, owner=r.owner
                )
            else:
                self._finish(graph, r, rc, usage)
        if monitor is not None and running and monitor.due():
            monitor.sample()

    def _ended(self, running: dict[int, _Running], wake: _Wakeup) -> list[Ended]:
        reaped = self._reaped(running)
        if wake.terminated_by is None and any(-rc in STEP_SIGNALS for _, rc, _ in reaped):
            # scancel signals every process of the step, a job's before or after ours: a
            # job killed that way is the batch's termination, not the job's own end.
            wake.settle(STEP_SIGNAL_SETTLE_S)
            seen = {pid for pid, _, _ in reaped}  # exits whose wake-up byte settle() read:
            reaped += self._reaped(running.keys() - seen)
        return reaped

    def _finish(
        self, graph: JobGraph, done: _Running, rc: int, usage: resource.struct_rusage | None
    ) -> None:
        self.walltime.ran(self.clock() - done.start)
        if rc < 0:
            self._remove_container(done.job)  # its client was killed; podman's container lives
            self._record(
                done.job,
                "finished",
                128 - rc,
                done.start,
                f"killed by signal {-rc}",
                usage,
                owner=done.owner,
            )
        else:
            self._record(done.job, "finished", rc, done.start, usage=usage, owner=done.owner)
        graph.release(done.job.name, rc == 0)

    def _cancel(self, job: JobSpec, reason: str) -> None:
        self._record(job, "canceled", None, None, reason)

    def _terminate(self, running: dict[int, _Running], wake: _Wakeup) -> None:
        ended = self._stop_all(running, wake)
        reason = _terminated(wake)
        for pid, r in running.items():
            self._remove_container(r.job)
            self._record(r.job, "missing", None, r.start, reason, ended[pid][2], owner=r.owner)
        if self.walltime.at_end():  # SLURM's kill at the walltime: no user canceled them
            self._left_for_walltime()
        else:
            self._cancel_unrun(reason)
        if self.sharing is not None:  # claimed here, not started: they end with this batch
            for owner, job in self.sharing.drain():
                self._record(job, "canceled", None, None, reason, owner=owner)

    def _left_for_walltime(self) -> None:
        """The event that says which jobs the runner left unrecorded for its walltime: the
        batch's wait continues them (sensors.slurm)."""
        time_left = self.walltime.time_left_s() or 0.0
        sharing = self.sharing
        left = [
            j.name
            for j in self.spec.jobs
            if j.name not in self.recorded and (sharing is None or not sharing.known_away(j))
        ]
        self.events.emit(
            JOBS_LEFT,
            batch=self.spec.batch,
            hpc_job_id=self.hpc_job_id,
            message=(
                f"{len(left)} job(s) not started: they would not end "
                f"{self.walltime.margin_s:g} s before the walltime ({time_left:.0f} s left)"
            ),
            data={"jobs": left[:1000], "time_left_s": round(time_left, 1)},
        )

    def _cancel_unrun(self, reason: str) -> None:
        """Every own job without a record, canceled. Where the batch shares work each one's
        chunk is claimed first, so that no other batch runs it after this record; a job
        another batch claimed is that batch's to run and record."""
        sharing = self.sharing
        for job in self.spec.jobs:
            if job.name not in self.recorded and (sharing is None or sharing.own(job)):
                self._record(job, "canceled", None, None, reason)

    def _failed_external_blockers(self) -> set[str]:
        """Blockers in earlier batches that did not succeed, read from their result records."""
        wanted = {b for job in self.spec.jobs for b in job.external_blockers}
        if not wanted:
            return set()
        records = collect_results(self.output_dir)
        return {b for b in wanted if b not in records or not records[b].succeeded}

    def _exit_code(self, wake: _Wakeup) -> int:
        if wake.terminated_by is not None:
            return 128 + wake.terminated_by
        return EXIT_JOBS_FAILED if self.any_failed else EXIT_OK


def _allocation_nodes() -> int:
    nodes = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or ""
    return int(nodes) if nodes.isdigit() and int(nodes) > 0 else 1


def _oserror(exc: OSError) -> str:
    """'No space left on device: /path', the way a user searches for it."""
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def run_batch(
    spec: BatchSpec,
    output_dir: str | os.PathLike[str],
    num_processes: int | None = None,
    monitor_interval_s: float | None = None,
) -> int:
    """Run a batch; returns 0 (all succeeded), 1 (some did not) or 128+signal (terminated).
    `monitor_interval_s` overrides the batch's (0: no resource monitor)."""
    return BatchRunner(spec, output_dir, num_processes, monitor_interval_s=monitor_interval_s).run()
