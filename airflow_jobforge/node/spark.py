"""A Spark standalone cluster inside one batch's allocation, started by the node runner
before the jobs and stopped after them.

What JADE's users meet, and what is done here instead:
- *Workers killed when the step that started them ends, leftover JVMs.* Nothing daemonises:
  the master is a child of the runner (in the batch step, in its own process group), the
  workers run as ONE `srun --overlap` step with a task per node whose process is the worker
  JVM's parent (`python -m airflow_jobforge.node spark-worker`). SLURM tracks every process
  of both steps, so scancel and a walltime kill them all, executors included; at the end the
  runner stops the worker step, then the master, escalating to SIGKILL. Without SLURM (the
  local backend) the one worker is a child process group of the runner.
- *Fixed sleeps.* Ports are the kernel's (port 0): the master's URL and web UI port are read
  from its log the moment it binds, then the master's JSON endpoint (`<web UI>/json/`) is asked
  every POLL_S until as many workers are alive as the allocation has nodes. A master that
  exits, a worker step that ends, or the timeout, end the start at once with the log tail.
- *An application silently in local mode.* Each job gets `SPARK_MASTER_URL` and its own
  `SPARK_CONF_DIR` whose spark-defaults.conf names the master, so `spark-submit job.py` and
  PySpark's `SparkSession.builder.getOrCreate()` reach the cluster. The job's conf also sends
  its event logs to `spark/<batch>/events/<job>/` in the run dir: the record says which
  applications a job ran, and `jobforge stats` reads them.
- *JVM/pyspark mismatches.* The default Spark home is the pyspark package of the runner's
  Python; executors get that Python (`PYSPARK_PYTHON`), so driver, executors and JVM match.
- *Shuffle on the shared file system.* spark.local.dir, the workers' dirs and
  SPARK_LOCAL_DIRS are node-local scratch (`$TMPDIR` or /tmp, or `local_dir`), refused when
  inside the run's output dir, and removed when the cluster stops.
- *Memory.* A worker offers the node's allocated memory (SLURM_MEM_PER_NODE, else per-CPU x
  CPUs) less the driver's and an overhead, and all its CPUs (sparkctl's sizing); executors
  default to one per worker with all of it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from airflow_jobforge.rundir.batches import SparkSpec
from airflow_jobforge.rundir.spark import (
    LOGS_DIR,
    ClusterInfo,
    app_ids,
    job_events_dir,
    spark_batch_dir,
)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
POLL_S = 0.2
STOP_GRACE_S = 8.0
MIN_WORKER_MB = 512
LOG_TAIL_LINES = 15
_MASTER_URL = re.compile(r"Starting Spark master at (spark://\S+)")
_UI_PORT = re.compile(r"Successfully started service 'MasterUI' on port (\d+)")
_STEP = re.compile(r"[0-9]+\.[0-9]+")
STEP_FILE = "worker-step"
EXECUTORS_DIR = "executors"
_SIZE = re.compile(r"([0-9]+)([KMGT]?)")
_UNIT_MB = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}

# (seconds) -> False when the batch was terminated meanwhile: the runner's signal-aware sleep.
Pause = Callable[[float], bool]


class SparkStartError(Exception):
    """The cluster did not come up; the message is every job's recorded reason."""


# --- sizing (pure) ------------------------------------------------------------------------
def size_mb(size: str) -> int:
    """A SLURM-style size (plain number: MB) in MB."""
    match = _SIZE.fullmatch(size.strip().upper())
    if not match:
        raise ValueError(f"not a memory size: {size!r}")
    return int(int(match[1]) * _UNIT_MB[match[2]])


@dataclass(frozen=True)
class NodeResources:
    memory_mb: int | None
    cpus: int


def node_resources(env: Mapping[str, str] = os.environ) -> NodeResources:
    """This node's share of the allocation; without SLURM, what the machine has free."""
    cpus_text = env.get("SLURM_CPUS_ON_NODE", "")
    cpus = int(cpus_text) if cpus_text.isdigit() and int(cpus_text) > 0 else _affinity()
    per_node = env.get("SLURM_MEM_PER_NODE", "")
    per_cpu = env.get("SLURM_MEM_PER_CPU", "")
    if per_node.isdigit() and int(per_node) > 0:
        memory: int | None = int(per_node)
    elif per_cpu.isdigit() and int(per_cpu) > 0:
        memory = int(per_cpu) * cpus
    else:
        memory = _available_mb()
    return NodeResources(memory_mb=memory, cpus=cpus)


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _available_mb() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def worker_memory_mb(spec: SparkSpec, node: NodeResources) -> int:
    if spec.worker_memory is not None:
        return size_mb(spec.worker_memory)
    if node.memory_mb is None:
        raise SparkStartError(
            "Spark worker memory unknown: the allocation's memory is not known here; "
            "set spark.worker_memory"
        )
    memory = node.memory_mb - size_mb(spec.driver_memory) - size_mb(spec.memory_overhead)
    if memory < MIN_WORKER_MB:
        raise SparkStartError(
            f"Spark workers would get {memory} MB: the node has {node.memory_mb} MB, less "
            f"driver_memory {spec.driver_memory} and memory_overhead {spec.memory_overhead}; "
            f"ask for more slurm.mem or set spark.worker_memory (at least {MIN_WORKER_MB} MB)"
        )
    return memory


def defaults_conf(entries: Mapping[str, str]) -> str:
    """spark-defaults.conf text; keys and values were validated (no control characters)."""
    return "".join(f"{key} {value}\n" for key, value in entries.items())


def job_conf_entries(
    spec: SparkSpec, master_url: str, events_dir: str, local_dir: str, executor_mb: int
) -> dict[str, str]:
    """What a job's driver is told; the user's `conf` comes last and wins, except the keys the
    config refuses (master, event log dir, local dir)."""
    entries = {
        "spark.master": master_url,
        "spark.driver.memory": f"{size_mb(spec.driver_memory)}m",
        "spark.executor.memory": f"{executor_mb}m",
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": Path(events_dir).as_uri(),
        "spark.eventLog.rolling.enabled": "false",
        "spark.eventLog.compress": "false",
        "spark.local.dir": local_dir,
        "spark.ui.showConsoleProgress": "false",
    }
    entries.update(spec.conf)
    return entries


def find_spark_home(spec: SparkSpec) -> str:
    if spec.spark_home:
        home = spec.spark_home
    else:
        found = importlib.util.find_spec("pyspark")
        if found is None or found.origin is None:
            raise SparkStartError(
                f"Spark not found: pyspark is not installed for {sys.executable} (install "
                "airflow-jobforge[spark] where batches run) and spark.spark_home is not set"
            )
        home = str(Path(found.origin).parent)
    if not os.access(Path(home, "bin", "spark-class"), os.X_OK):
        raise SparkStartError(f"Spark home {home} has no executable bin/spark-class")
    return home


def scratch_dir(spec: SparkSpec, output_dir: Path, job_id: str, batch: str) -> Path:
    """The node-local dir of this batch's cluster; never on the run's (shared) output dir."""
    base = Path(spec.local_dir or os.environ.get("TMPDIR") or "/tmp").resolve()
    out = output_dir.resolve()
    if base == out or out in base.parents:
        raise SparkStartError(
            f"Spark local dir {base} is inside the run's output dir {out}: shuffle and spill "
            "must stay node-local; set spark.local_dir or TMPDIR to a node-local path"
        )
    return base / f"jobforge-spark-{_safe(job_id)}-{_safe(batch)}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else f"(empty log {path})"


def this_host(env: Mapping[str, str] = os.environ) -> str:
    """The node's name as SLURM (and the other nodes' resolvers) know it."""
    return env.get("SLURMD_NODENAME") or socket.gethostname()


# --- the cluster --------------------------------------------------------------------------
class SparkCluster:
    """One batch's cluster: `start`, `env` for all jobs and `job_conf_dir` for each, `apps_of`
    after a job, `stop`."""

    def __init__(self, spec: SparkSpec, output_dir: Path, batch: str, python: str) -> None:
        self.spec = spec
        self.output_dir = output_dir
        self.batch = batch
        self.python = python
        self.hpc_job_id = os.environ.get("SLURM_JOB_ID")
        self.under_slurm = bool(self.hpc_job_id and shutil.which("srun"))
        nodes = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or "1"
        self.node_count = int(nodes) if self.under_slurm and nodes.isdigit() else 1
        self.host = this_host()
        self.dir = spark_batch_dir(output_dir, batch)
        self.logs = self.dir / LOGS_DIR
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: subprocess.Popen[bytes] | None = None
        self.master_url = ""
        self.web_ui = ""
        self.scratch: Path | None = None
        self.home = ""
        self.executor_mb = 0
        self.info: ClusterInfo | None = None
        self.lost: str | None = None
        self.started = time.time()

    # --- start -----------------------------------------------------------------------------
    def start(self, pause: Pause) -> ClusterInfo:
        """Master, then workers, then wait until all are alive; SparkStartError if not."""
        self.started = time.time()
        deadline = time.monotonic() + self.spec.startup_timeout_s
        self.home = find_spark_home(self.spec)
        node = node_resources()
        worker_mb = worker_memory_mb(self.spec, node)
        self.executor_mb = (
            size_mb(self.spec.executor_memory) if self.spec.executor_memory else worker_mb
        )
        job_id = self.hpc_job_id or os.environ.get("JOBFORGE_JOB_ID") or str(os.getpid())
        self.scratch = scratch_dir(self.spec, self.output_dir, job_id, self.batch)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.scratch / "conf").mkdir(parents=True, exist_ok=True)
        self._start_master()
        self._await_master(deadline, pause)
        self._start_workers(worker_mb)
        status = self._await_workers(deadline, pause)
        workers = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
        self.info = ClusterInfo(
            batch=self.batch,
            master_url=self.master_url,
            web_ui=self.web_ui,
            master_host=self.host,
            nodes=sorted({str(w.get("host", "")) for w in workers}),
            workers_alive=len(workers),
            cores=int(status.get("cores") or 0),
            memory_mb=int(status.get("memory") or 0),
            started=self.started,
            ready=time.time(),
            hpc_job_id=self.hpc_job_id,
        )
        return self.info

    def _daemon_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SPARK_HOME"] = self.home
        # spark-class reads the ports of an older SPARK_MASTER_PORT etc.; ours come as flags.
        for name in ("SPARK_MASTER_PORT", "SPARK_MASTER_WEBUI_PORT", "SPARK_MASTER_HOST"):
            env.pop(name, None)
        return env

    def _start_master(self) -> None:
        assert self.scratch is not None
        # The master's own settings: no REST submission server (unauthenticated, a fixed port).
        conf = self.scratch / "master.conf"
        conf.write_text(defaults_conf({"spark.master.rest.enabled": "false"}), encoding="utf-8")
        argv = [
            str(Path(self.home, "bin", "spark-class")),
            MASTER_CLASS,
            "--host",
            self.host,
            "--port",
            "0",
            "--webui-port",
            "0",
            "--properties-file",
            str(conf),
        ]
        self.master = self._daemon(argv, "master.log")

    def _daemon(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        """A process group of its own, so that its stop reaches all it started."""
        with open(self.logs / log_name, "ab") as log:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._daemon_env(),
                start_new_session=True,
            )

    def _await_master(self, deadline: float, pause: Pause) -> None:
        log = self.logs / "master.log"
        port = None
        while True:
            try:
                text = log.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            url, ui = _MASTER_URL.search(text), _UI_PORT.search(text)
            if url and ui:
                self.master_url, port = url[1], ui[1]
                break
            self._check_master("did not start")
            if time.monotonic() >= deadline:
                raise SparkStartError(
                    f"Spark master did not start on {self.host} within "
                    f"{self.spec.startup_timeout_s:g} s: {log_tail(log)}"
                )
            if not pause(POLL_S):
                raise SparkStartError("batch terminated during the Spark cluster start")
        self.web_ui = f"http://{self.host}:{port}"

    def _check_master(self, what: str) -> None:
        assert self.master is not None
        if self.master.poll() is not None:
            raise SparkStartError(
                f"Spark master {what} on {self.host} (exit code {self.master.returncode}): "
                f"{log_tail(self.logs / 'master.log')}"
            )

    def worker_argv(self, worker_mb: int) -> list[str]:
        assert self.scratch is not None
        argv = [
            self.python,
            "-m",
            "airflow_jobforge.node",
            "spark-worker",
            "--master",
            self.master_url,
            "--memory-mb",
            str(worker_mb),
            "--scratch",
            str(self.scratch),
            "--logs",
            str(self.logs),
            "--spark-home",
            self.home,
        ]
        if self.spec.worker_cores is not None:
            argv += ["--cores", str(self.spec.worker_cores)]
        if not self.under_slurm:
            return argv
        n = str(self.node_count)
        return [
            "srun",
            "--overlap",
            f"--nodes={n}",
            f"--ntasks={n}",
            "--ntasks-per-node=1",
            "--mem=0",
            "--kill-on-bad-exit=0",
            "--job-name=spark-workers",
            *argv,
        ]

    def _start_workers(self, worker_mb: int) -> None:
        self.workers = self._daemon(self.worker_argv(worker_mb), "workers.log")

    def _await_workers(self, deadline: float, pause: Pause) -> dict:
        assert self.workers is not None
        alive = 0
        while True:
            status = self._status()
            alive = int(status.get("aliveworkers") or 0)
            if alive >= self.node_count:
                return status
            self._check_master("exited")
            if self.workers.poll() is not None:
                raise SparkStartError(
                    f"Spark workers exited (code {self.workers.returncode}) before registering "
                    f"with the master on {self.host}: {self._worker_tails()}"
                )
            if time.monotonic() >= deadline:
                raise SparkStartError(
                    f"Spark workers did not register with the master on {self.host} within "
                    f"{self.spec.startup_timeout_s:g} s ({alive} of {self.node_count} alive): "
                    f"{self._worker_tails()}"
                )
            if not pause(POLL_S):
                raise SparkStartError("batch terminated during the Spark cluster start")

    def _status(self) -> dict:
        try:
            with urllib.request.urlopen(f"{self.web_ui}/json/", timeout=2) as reply:
                data = json.loads(reply.read())
        except (OSError, ValueError, urllib.error.URLError):
            return {}
        return data if isinstance(data, dict) else {}

    def _worker_tails(self) -> str:
        tails = [f"{p.name}: {log_tail(p, 5)}" for p in sorted(self.logs.glob("worker*.log"))]
        return "; ".join(tails) or "(no worker log)"

    # --- jobs ------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """What every job of the batch gets (SPARK_CONF_DIR comes per job)."""
        first = [f"{self.home}/bin"]
        if sys.prefix != sys.base_prefix:  # the runner's venv: `python` has the same pyspark
            first.append(str(Path(self.python).parent))
        path = os.environ.get("PATH", "")
        return {
            "SPARK_HOME": self.home,
            "SPARK_MASTER_URL": self.master_url,
            "JOBFORGE_SPARK_WEB_UI": self.web_ui,
            "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON") or self.python,
            "PATH": ":".join([*first, path] if path else first),
        }

    def job_conf_dir(self, job: str) -> str:
        """The job's SPARK_CONF_DIR: the site's conf files, then spark-defaults.conf naming
        this cluster and the job's event log dir."""
        assert self.scratch is not None
        conf_dir = self.scratch / "conf" / job
        conf_dir.mkdir(parents=True, exist_ok=True)
        events = job_events_dir(self.output_dir, self.batch, job)
        events.mkdir(parents=True, exist_ok=True)
        local = self.scratch / "driver-local"
        local.mkdir(exist_ok=True)
        site = Path(os.environ.get("SPARK_CONF_DIR") or Path(self.home, "conf"))
        for name in ("spark-env.sh", "log4j2.properties"):
            if (site / name).is_file():
                shutil.copy2(site / name, conf_dir / name)
        try:
            site_defaults = (site / "spark-defaults.conf").read_text(encoding="utf-8")
        except OSError:
            site_defaults = ""
        if site_defaults and not site_defaults.endswith("\n"):
            site_defaults += "\n"
        entries = job_conf_entries(
            self.spec, self.master_url, str(events), str(local), self.executor_mb
        )
        (conf_dir / "spark-defaults.conf").write_text(
            site_defaults + defaults_conf(entries), encoding="utf-8"
        )
        return str(conf_dir)

    def apps_of(self, job: str, since: float) -> list[str]:
        return app_ids(job_events_dir(self.output_dir, self.batch, job), since)

    def reaped(self, pid: int, code: int) -> None:
        """The runner reaped one of our processes (it waits for any child)."""
        for name, proc in (("master", self.master), ("worker step", self.workers)):
            if proc is not None and proc.pid == pid and proc.returncode is None:
                proc.returncode = code
                self.lost = self.lost or f"Spark {name} exited with code {code} during the batch"

    # --- stop ------------------------------------------------------------------------------
    def stop(self) -> ClusterInfo | None:
        """Workers (and their executors), then the master; node-local scratch removed."""
        if self.workers is not None:
            if self.under_slurm:
                _stop_srun(self.workers, self.logs / STEP_FILE)
            else:
                _stop_group(self.workers)
        if self.master is not None:
            _stop_group(self.master)
        leftover = []
        if self.master is not None and _group_alive(self.master.pid):
            leftover.append(f"master process group {self.master.pid}")
        if self.workers is not None:
            if self.under_slurm and self.workers.poll() is None:
                leftover.append(f"worker step (srun {self.workers.pid} still running)")
            elif not self.under_slurm and _group_alive(self.workers.pid):
                leftover.append(f"worker process group {self.workers.pid}")
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if self.info is not None:
            self.info = ClusterInfo(
                **{**self.info.__dict__, "stopped": time.time(), "leftover": leftover}
            )
        return self.info


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (a JVM's shutdown hooks stop its executors), SIGKILL what is
    left after the grace period, and wait for the group to be gone."""
    _signal_group(proc.pid, signal.SIGTERM)
    _wait(proc, STOP_GRACE_S)
    deadline = time.monotonic() + STOP_GRACE_S
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal_group(proc.pid, signal.SIGKILL)
    _wait(proc, STOP_GRACE_S)


def _stop_srun(proc: subprocess.Popen[bytes], step_file: Path) -> None:
    """First SIGTERM to the step's processes on every node (`scancel --signal`): each JVM
    stops its executors, each worker's parent removes its node's scratch. What is left then is
    the step's end: srun's SIGTERM makes SLURM kill the step (every process, every node), two
    SIGINTs within a second too; SIGKILL of srun itself is the last resort."""
    if proc.poll() is not None:
        return
    try:
        step = step_file.read_text(encoding="ascii").strip()
    except OSError:
        step = ""
    if _STEP.fullmatch(step):
        subprocess.run(
            ["scancel", "--signal=TERM", step], capture_output=True, check=False, timeout=30
        )
        if _wait(proc, STOP_GRACE_S):
            return
    proc.send_signal(signal.SIGTERM)
    if _wait(proc, STOP_GRACE_S):
        return
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    if not _wait(proc, STOP_GRACE_S):
        proc.kill()
        _wait(proc, STOP_GRACE_S)


# --- the worker side: one per node ------------------------------------------------------
def run_worker(
    master: str,
    memory_mb: int,
    scratch: str,
    logs: str,
    spark_home: str,
    cores: int | None = None,
) -> int:
    """Run this node's worker JVM as a child until it ends, then remove its scratch.

    Its parent, not `exec`: the scratch must go when the worker is stopped, and a parent that
    waits keeps the JVM inside the step (or process group) that SLURM or the runner stops."""
    host = this_host()
    cores = cores or node_resources().cpus
    node_scratch = Path(scratch) / f"worker-{_safe(host)}"
    work, local = node_scratch / "work", node_scratch / "local"
    work.mkdir(parents=True, exist_ok=True)
    local.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        SPARK_HOME=spark_home,
        SPARK_WORKER_DIR=str(work),
        SPARK_LOCAL_DIRS=str(local),
        PYSPARK_PYTHON=env.get("PYSPARK_PYTHON") or sys.executable,
    )
    argv = [
        str(Path(spark_home, "bin", "spark-class")),
        WORKER_CLASS,
        master,
        "--host",
        host,
        "--cores",
        str(cores),
        "--memory",
        f"{memory_mb}m",
        "--webui-port",
        "0",
        "--work-dir",
        str(work),
    ]
    Path(logs).mkdir(parents=True, exist_ok=True)
    log_path = Path(logs) / f"worker-{_safe(host)}.log"
    if os.environ.get("SLURM_PROCID") == "0" and os.environ.get("SLURM_STEP_ID"):
        # The runner stops the step by its id (`scancel --signal=TERM job.step`): gently.
        step = f"{os.environ.get('SLURM_JOB_ID', '')}.{os.environ['SLURM_STEP_ID']}"
        (Path(logs) / STEP_FILE).write_text(step + "\n", encoding="ascii")
    # The JVM gets the signals itself (slurmstepd and the runner signal the whole step or
    # group); this parent only waits, whatever arrives. A handler, not SIG_IGN: an ignored
    # signal would stay ignored in the JVM across exec, a handled one is reset.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _keep_waiting)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        except OSError as exc:
            log.write(f"cannot start the Spark worker: {exc}\n".encode())
            return 127
        code = proc.wait()
    keep_executor_logs(work, Path(logs) / EXECUTORS_DIR / _safe(host))
    shutil.rmtree(node_scratch, ignore_errors=True)
    try:
        os.rmdir(scratch)  # the last one out (on the runner's node the runner removes it)
    except OSError:
        pass
    return code


def keep_executor_logs(work: Path, into: Path) -> None:
    """The executors' stdout/stderr (`<work>/<app>/<executor>/`) into the run dir before the
    node-local work dir goes: what a failed task printed is often only there."""
    for log in work.glob("*/*/std*"):
        if log.name not in ("stdout", "stderr") or not log.is_file():
            continue
        target = into / log.relative_to(work)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, target)
        except OSError:
            continue


def _keep_waiting(_signum: int, _frame: object) -> None:
    """The worker's parent outlives the signal: it waits for the JVM, then cleans up."""
