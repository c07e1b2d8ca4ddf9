"""The resource monitor: samples a batch's running jobs and its node, from /proc.

It runs inside the node runner's loop, no thread: the loop blocks on its wake-up pipe until
the next sample is due (`seconds_until_due`), then calls `sample`, which appends one line
per running job and one for the node to `<run dir>/monitor/<batch>.jsonl` in a single write
on an O_APPEND descriptor (the format: `airflow_jobforge.rundir.samples`). A full disk
drops samples, says so once on stderr, and never costs a job.

/proc, not psutil: the node's Python need not have psutil, and reading the few fields wanted
with `os.read` costs less than building psutil's objects.

A job's processes. Jobs start in their own session, so a process whose session id is a job's
pid is that job's; one that left the session (setsid) is the job of its parent. Membership is
sticky: a job's process stays the job's when it later calls setsid or its parent dies.
Processes outside every job are remembered (pid -> start time) and not read again: a node
has hundreds of them (kernel threads mostly) and each read costs ~8 µs per sample, which at
a 1 s interval on a large node is most of the 1 % budget. Every FULL_SCAN_EVERY samples all
are read again, which catches a pid that ended and was reused by a job's process in between.

A job's CPU time and I/O are the sums over its live processes of their own counters plus
those of the children they reaped (cutime/cstime; /proc/<pid>/io counts reaped children):
a child too short to be seen still counts once its parent has waited for it, and nothing is
counted twice. Children that outlive their parent are reaped by init: their share is lost.
The exact figures of a job arrive at its end anyway, in its result record (wait4 rusage).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import NamedTuple

from airflow_jobforge.node.say import say as say_to_stderr
from airflow_jobforge.rundir.samples import monitor_file

PROC = "/proc"
SYS_BLOCK = "/sys/block"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own size
# The first sample comes this soon after the first job starts, so short batches get data.
FIRST_SAMPLE_MAX_S = 1.0
FULL_SCAN_EVERY = 20

# Devices that are not disks of their own: their I/O reaches a real disk (loop: a file; dm,
# md: the disks under them) or none (ram, zram).
_NOT_A_DISK = ("loop", "ram", "zram", "dm-", "md")
_PARTITION = re.compile(r"(sd|hd|vd|xvd)[a-z]+\d+|(nvme\d+n\d+|mmcblk\d+|nbd\d+)p\d+")


class PidStat(NamedTuple):
    """The fields of /proc/<pid>/stat the monitor reads."""

    ppid: int
    sid: int
    zombie: bool
    ticks: int  # utime + stime + cutime + cstime: its own CPU and its reaped children's
    start: int  # clock ticks after boot: with the pid, names a process
    rss_bytes: int


def parse_pid_stat(data: bytes) -> PidStat:
    # The command name is in parentheses and may hold spaces and ')': split after the last.
    f = data[data.rindex(b")") + 2 :].split()
    return PidStat(
        ppid=int(f[1]),
        sid=int(f[3]),
        zombie=f[0] in (b"Z", b"X"),
        ticks=int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]),
        start=int(f[19]),
        rss_bytes=int(f[21]) * PAGE_SIZE,
    )


def parse_pid_io(data: bytes) -> tuple[int, int]:
    """(read_bytes, write_bytes): what the process (and the children it reaped) made the
    storage layer read and write; page cache hits are not reads."""
    tokens = data.split()
    values = dict(zip(tokens[::2], tokens[1::2], strict=False))
    return int(values[b"read_bytes:"]), int(values[b"write_bytes:"])


def parse_cpu_times(data: bytes) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat's first line; iowait is idle."""
    line = data[: data.index(b"\n")]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
    busy = user + nice + system + irq + softirq + steal  # guest time is inside user
    return busy, busy + idle + iowait


def parse_meminfo(data: bytes) -> tuple[int, int]:
    """(used, total) bytes; used = MemTotal - MemAvailable, what `free` calls used."""
    values: dict[bytes, int] = {}
    for line in data.splitlines():
        key, _, rest = line.partition(b":")
        if key in (b"MemTotal", b"MemAvailable", b"MemFree", b"Buffers", b"Cached"):
            values[key] = int(rest.split()[0]) * 1024
    total = values[b"MemTotal"]
    available = values.get(b"MemAvailable")
    if available is None:  # kernels before 3.14
        available = values[b"MemFree"] + values[b"Buffers"] + values[b"Cached"]
    return total - available, total


def parse_diskstats(data: bytes, disks: Collection[str]) -> tuple[int, int]:
    """(read, written) bytes of the named devices, so partitions are not counted twice."""
    read = written = 0
    for line in data.splitlines():
        f = line.split()
        if len(f) >= 10 and f[2].decode() in disks:
            read += int(f[5])
            written += int(f[9])
    return read * SECTOR_BYTES, written * SECTOR_BYTES


def parse_net_dev(data: bytes) -> tuple[int, int]:
    """(received, transmitted) bytes of every interface but loopback."""
    rx = tx = 0
    for line in data.splitlines()[2:]:
        name, sep, rest = line.partition(b":")
        if not sep or name.strip() == b"lo":
            continue
        f = rest.split()
        rx += int(f[0])
        tx += int(f[8])
    return rx, tx


def looks_like_whole_disk(name: str) -> bool:
    """By name only, for when /sys/block cannot be read."""
    return not name.startswith(_NOT_A_DISK) and not _PARTITION.fullmatch(name)


def whole_disks(diskstats: bytes, sys_block: str = SYS_BLOCK) -> frozenset[str]:
    """The devices whose I/O is a disk's own: /sys/block lists whole devices (no partitions);
    of them, those stacked on others (dm, md: non-empty `slaves`) and virtual ones go."""
    try:
        names: Iterable[str] = os.listdir(sys_block)
    except OSError:
        names = (line.split()[2].decode() for line in diskstats.splitlines() if line.split())
        return frozenset(n for n in names if looks_like_whole_disk(n))
    disks = set()
    for name in names:
        if name.startswith(_NOT_A_DISK):
            continue
        try:
            if os.listdir(f"{sys_block}/{name}/slaves"):
                continue
        except OSError:
            pass
        disks.add(name)
    return frozenset(disks)


def _read_head(path: str) -> bytes:
    """One read: enough for the small per-process files."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _read_all(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class _NodeCounters(NamedTuple):
    t: float  # monotonic
    cpu_busy: int
    cpu_total: int
    disk_read: int
    disk_write: int
    net_rx: int
    net_tx: int


class _Job:
    __slots__ = ("name", "prefix", "t_prev", "ticks_prev", "peak_rss")

    def __init__(self, name: str, prefix: str, started: float) -> None:
        self.name = name
        self.prefix = prefix  # the line's constant part, JSON-encoded once
        self.t_prev = started
        self.ticks_prev = 0
        self.peak_rss = 0


class ResourceMonitor:
    """Samples the running jobs (told by `job_started`/`job_ended`) and the node.

    `cpu_s` and `samples` tell what the monitor cost: its own thread's CPU time.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        batch: str,
        interval_s: float,
        *,
        host: str,
        hpc_job_id: str | None = None,
        say: Callable[[str], None] = say_to_stderr,
    ) -> None:
        started = time.thread_time()
        self.path = monitor_file(run_dir, batch)
        self.interval_s = interval_s
        self.samples = 0
        self.cpu_s = 0.0
        self.stopped = False
        self._say = say
        self._fd: int | None = None
        self._torn = False
        self._write_error_said = False
        self._next_due: float | None = None
        self._jobs: dict[str, _Job] = {}  # by pid, as /proc names it
        self._procs: dict[str, tuple[int, str | None]] = {}  # pid -> (start, job pid or None)
        self._scans = 0
        self._pidfiles: dict[str, str] = {}  # job pid -> pid file not read yet
        self._aliases: dict[str, str] = {}  # pid of a process outside the tree -> job pid
        self._ncpus = os.cpu_count() or 1
        self._job_keys = f'"batch":{json.dumps(batch)},"host":{json.dumps(host)}'
        self._node_prefix = (
            f'"kind":"node","batch":{json.dumps(batch)},"host":{json.dumps(host)},'
            f'"hpc_job_id":{json.dumps(hpc_job_id)},"ncpus":{self._ncpus}'
        )
        self._disks: frozenset[str] = frozenset()
        try:
            self._disks = whole_disks(_read_all(f"{PROC}/diskstats"))
            self._node_prev = self._node_counters()  # the first sample's rates need a start
        except Exception as exc:  # no usable /proc: the batch runs unobserved, as in sample()
            self.stopped = True
            self._say(f"resource monitor not started: {type(exc).__name__}: {exc}")
        self.cpu_s += time.thread_time() - started

    # --- what the runner calls ---------------------------------------------------------------
    def job_started(self, pid: int, name: str, pidfile: str | None = None) -> None:
        """`pidfile`: where a process outside the job's tree that runs its work will write its
        pid (podman's conmon, parent of the container): its processes count to the job too."""
        now = time.monotonic()
        self._jobs[str(pid)] = _Job(name, f'{self._job_keys},"job":{json.dumps(name)}', now)
        if pidfile is not None:
            self._pidfiles[str(pid)] = pidfile
        if self._next_due is None:
            self._next_due = now + min(self.interval_s, FIRST_SAMPLE_MAX_S)

    def job_ended(self, pid: int) -> None:
        key = str(pid)
        self._jobs.pop(key, None)
        self._pidfiles.pop(key, None)
        for alias in [a for a, owner in self._aliases.items() if owner == key]:
            del self._aliases[alias]

    def seconds_until_due(self) -> float | None:
        if self._next_due is None or self.stopped:
            return None
        return max(0.0, self._next_due - time.monotonic())

    def due(self) -> bool:
        return (
            not self.stopped and self._next_due is not None and (time.monotonic() >= self._next_due)
        )

    def sample(self) -> None:
        """Take one sample and append it. A fault in the monitor stops the monitor, never the
        batch: whatever it is, it is said once on stderr and the jobs run on unobserved."""
        started = time.thread_time()
        try:
            self._sample()
        except Exception as exc:  # whatever it is: see the docstring
            self.stopped = True
            self._say(f"resource monitor stopped: {type(exc).__name__}: {exc}")
        self.samples += 1
        self.cpu_s += time.thread_time() - started

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- sampling ----------------------------------------------------------------------------
    def _sample(self) -> None:
        now = time.monotonic()
        self._next_due = (self._next_due or now) + self.interval_s
        if self._next_due <= now:  # late (a long sample, a stopped runner): no catching up
            self._next_due = now + self.interval_s
        t = time.time()
        totals = self._job_totals()
        lines = [self._node_line(t, now)]
        for pid, job in self._jobs.items():
            found = totals.get(pid)
            if found is None:
                continue
            ticks, rss, nprocs, read, written = found
            elapsed = now - job.t_prev
            cpu = 100.0 * max(0, ticks - job.ticks_prev) / CLOCK_TICKS / elapsed if elapsed else 0
            job.t_prev, job.ticks_prev = now, ticks
            job.peak_rss = max(job.peak_rss, rss)
            lines.append(
                f'{{"t":{t:.3f},"kind":"job",{job.prefix},"cpu_pct":{cpu:.1f},'
                f'"rss_bytes":{rss},"peak_rss_bytes":{job.peak_rss},"read_bytes":{read},'
                f'"write_bytes":{written},"nprocs":{nprocs}}}\n'
            )
        self._write("".join(lines))

    def _job_totals(self) -> dict[str, list[int]]:
        """Per job pid: [cpu ticks, rss bytes, live processes, read bytes, written bytes]."""
        jobs = self._jobs
        full = self._adopt_pidfiles() or self._scans % FULL_SCAN_EVERY == 0
        self._scans += 1
        cached = self._procs
        procs: dict[str, tuple[int, str | None]] = {}
        stats: dict[str, PidStat] = {}
        for name in os.listdir(PROC):
            entry = cached.get(name)
            if entry is not None and entry[1] is None and not full and name not in jobs:
                procs[name] = entry  # outside every job, and known to be the same process
                continue
            if not name.isdigit():
                continue
            try:
                stat = parse_pid_stat(_read_head(f"{PROC}/{name}/stat"))
            except (OSError, ValueError, IndexError):
                continue  # it ended
            stats[name] = stat
            if entry is not None and entry[0] == stat.start:
                procs[name] = entry

        owners: dict[str, str | None] = dict(self._aliases)
        for name in stats:
            _resolve(name, jobs, stats, procs, owners)

        totals: dict[str, list[int]] = {}
        for name, stat in stats.items():
            owner = owners[name]
            procs[name] = (stat.start, owner)
            if owner is None:
                continue
            acc = totals.get(owner)
            if acc is None:
                acc = totals[owner] = [0, 0, 0, 0, 0]
            acc[0] += stat.ticks
            acc[1] += stat.rss_bytes
            acc[2] += not stat.zombie
            try:
                read, written = parse_pid_io(_read_head(f"{PROC}/{name}/io"))
            except (OSError, ValueError, KeyError):
                continue  # ended, or not ours to read (EACCES: a setuid program)
            acc[3] += read
            acc[4] += written
        self._procs = procs
        return totals

    def _adopt_pidfiles(self) -> bool:
        """Read the pid files that appeared; True when one did (its processes may have been
        set aside as outsiders already: the scan must read every process again)."""
        adopted = False
        for job, path in list(self._pidfiles.items()):
            try:
                text = _read_head(path).strip()
            except OSError:
                continue
            if text.isdigit():
                self._aliases[text.decode()] = job
                del self._pidfiles[job]
                adopted = True
        return adopted

    def _node_counters(self) -> _NodeCounters:
        busy, total = parse_cpu_times(_read_head(f"{PROC}/stat"))
        disk_read, disk_write = parse_diskstats(_read_all(f"{PROC}/diskstats"), self._disks)
        rx, tx = parse_net_dev(_read_all(f"{PROC}/net/dev"))
        return _NodeCounters(time.monotonic(), busy, total, disk_read, disk_write, rx, tx)

    def _node_line(self, t: float, now: float) -> str:
        prev, cur = self._node_prev, self._node_counters()
        self._node_prev = cur
        used, total = parse_meminfo(_read_all(f"{PROC}/meminfo"))
        elapsed = cur.t - prev.t or 1e-9
        cpu_ticks = cur.cpu_total - prev.cpu_total
        cpu = 100.0 * (cur.cpu_busy - prev.cpu_busy) / cpu_ticks if cpu_ticks > 0 else 0.0

        def rate(now_value: int, prev_value: int) -> int:
            return max(0, round((now_value - prev_value) / elapsed))

        return (
            f'{{"t":{t:.3f},{self._node_prefix},"cpu_pct":{cpu:.1f},'
            f'"mem_used_bytes":{used},"mem_total_bytes":{total},'
            f'"disk_read_bps":{rate(cur.disk_read, prev.disk_read)},'
            f'"disk_write_bps":{rate(cur.disk_write, prev.disk_write)},'
            f'"net_rx_bps":{rate(cur.net_rx, prev.net_rx)},'
            f'"net_tx_bps":{rate(cur.net_tx, prev.net_tx)}}}\n'
        )

    def _write(self, text: str) -> None:
        """One write on an O_APPEND descriptor; a short one leaves a torn line that the next
        sample ends first, so readers skip just that line."""
        data = ("\n" + text if self._torn else text).encode()
        try:
            if self._fd is None:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            written = os.write(self._fd, data)
        except OSError as exc:
            self._write_failed(f"{exc.strerror or exc}")
            return
        self._torn = written != len(data)
        if self._torn:
            self._write_failed(f"{os.strerror(28)} (wrote {written} of {len(data)} bytes)")

    def _write_failed(self, why: str) -> None:
        if not self._write_error_said:
            self._write_error_said = True
            self._say(
                f"resource monitor cannot write samples to {self.path}: {why}; "
                "samples are dropped, jobs keep running"
            )


def _resolve(
    name: str,
    jobs: dict[str, _Job],
    stats: dict[str, PidStat],
    procs: dict[str, tuple[int, str | None]],
    owners: dict[str, str | None],
) -> str | None:
    """The job pid a process belongs to, or None; memoised in `owners`."""
    chain: list[str] = []
    owner: str | None = None
    while True:
        if name in owners:
            owner = owners[name]
            break
        if name in jobs:
            owner = name
            break
        known = procs.get(name)
        if known is not None:  # seen before as this very process: membership is sticky
            owner = known[1] if known[1] in jobs else None
            break
        stat = stats.get(name)
        if stat is None:  # an outsider not read this time, or gone
            break
        sid = str(stat.sid)
        if sid in jobs:
            owner = sid
            break
        owners[name] = None  # a guard: a ppid loop (pid reuse mid-scan) ends here
        chain.append(name)
        name = str(stat.ppid)
    for link in chain:
        owners[link] = owner
    owners.setdefault(name, owner)
    return owner
