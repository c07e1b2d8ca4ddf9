"""The node side of a batch's Spark cluster without a JVM or SLURM: sizing, the jobs' conf,
scratch and Spark home checks, the worker step's argv, and a runner whose cluster does not
start (every job canceled with why, an event, a fast end)."""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path

import pytest

from airflow_jobforge.node import __main__ as node_main
from airflow_jobforge.node import spark
from airflow_jobforge.node.runner import run_batch
from airflow_jobforge.node.spark import (
    NodeResources,
    SparkCluster,
    SparkStartError,
    defaults_conf,
    find_spark_home,
    job_conf_entries,
    node_resources,
    scratch_dir,
    size_mb,
    worker_memory_mb,
)
from airflow_jobforge.rundir import read_records, results_file
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec, SparkSpec
from airflow_jobforge.rundir.events import SPARK_CLUSTER_FAILED, read_events


# --- sizes and node resources -------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("1024", 1024),
        ("2G", 2048),
        ("2g", 2048),
        ("512M", 512),
        ("1T", 1024 * 1024),
        ("3K", 0),
        ("2048K", 2),
        (" 64 ", 64),
    ],
)
def test_a_slurm_size_is_read_in_mb(text, mb):
    assert size_mb(text) == mb


@pytest.mark.parametrize("text", ["", "G", "1.5G", "-1", "2GB", "10 G", "lots"])
def test_what_is_no_size_is_a_value_error(text):
    with pytest.raises(ValueError, match="not a memory size"):
        size_mb(text)


def test_node_memory_is_slurm_mem_per_node():
    env = {"SLURM_MEM_PER_NODE": "8000", "SLURM_MEM_PER_CPU": "100", "SLURM_CPUS_ON_NODE": "4"}
    assert node_resources(env) == NodeResources(memory_mb=8000, cpus=4)


def test_node_memory_is_mem_per_cpu_times_the_nodes_cpus():
    env = {"SLURM_MEM_PER_CPU": "1500", "SLURM_CPUS_ON_NODE": "6"}
    assert node_resources(env) == NodeResources(memory_mb=9000, cpus=6)


def test_without_slurm_memory_the_node_offers_memavailable(monkeypatch):
    meminfo = "MemTotal:       16000000 kB\nMemFree: 1 kB\nMemAvailable:    2097152 kB\n"
    monkeypatch.setattr(spark, "open", lambda *a, **k: io.StringIO(meminfo), raising=False)
    resources = node_resources({"SLURM_CPUS_ON_NODE": "2"})
    assert resources == NodeResources(memory_mb=2048, cpus=2)


def test_without_slurm_memory_or_proc_the_node_memory_is_unknown(monkeypatch):
    def no_proc(*_args, **_kwargs):
        raise FileNotFoundError("/proc/meminfo")

    monkeypatch.setattr(spark, "open", no_proc, raising=False)
    assert node_resources({"SLURM_MEM_PER_NODE": "0"}).memory_mb is None


def test_without_slurm_cpus_the_node_has_its_affinity():
    assert node_resources({}).cpus == len(os.sched_getaffinity(0))


# --- worker memory ------------------------------------------------------------------------
def test_worker_memory_defaults_to_the_node_less_driver_and_overhead():
    spec = SparkSpec(driver_memory="1G", memory_overhead="512M")
    assert worker_memory_mb(spec, NodeResources(memory_mb=8192, cpus=4)) == 8192 - 1024 - 512


def test_an_explicit_worker_memory_wins():
    spec = SparkSpec(worker_memory="3G")
    assert worker_memory_mb(spec, NodeResources(memory_mb=100_000, cpus=4)) == 3072
    assert worker_memory_mb(spec, NodeResources(memory_mb=None, cpus=4)) == 3072


def test_a_node_too_small_for_a_worker_says_what_it_has_and_what_to_set():
    with pytest.raises(SparkStartError) as info:
        worker_memory_mb(SparkSpec(), NodeResources(memory_mb=2500, cpus=4))
    message = str(info.value)
    assert "452 MB" in message and "2500 MB" in message
    assert "slurm.mem" in message and "spark.worker_memory" in message


def test_an_unknown_node_memory_asks_for_worker_memory():
    with pytest.raises(SparkStartError, match="set spark.worker_memory"):
        worker_memory_mb(SparkSpec(), NodeResources(memory_mb=None, cpus=4))


# --- the jobs' conf -----------------------------------------------------------------------
def test_a_jobs_conf_names_the_master_its_event_log_dir_and_scratch(tmp_path):
    events = tmp_path / "spark" / "b" / "events" / "my job"
    entries = job_conf_entries(
        SparkSpec(driver_memory="2G"), "spark://n1:41000", str(events), "/tmp/x/local", 3000
    )
    assert entries["spark.master"] == "spark://n1:41000"
    assert entries["spark.eventLog.dir"] == events.as_uri()
    assert entries["spark.eventLog.dir"].startswith("file:///")
    assert "%20" in entries["spark.eventLog.dir"]  # a URI, not the path
    assert entries["spark.eventLog.enabled"] == "true"
    assert entries["spark.local.dir"] == "/tmp/x/local"
    assert entries["spark.driver.memory"] == "2048m"
    assert entries["spark.executor.memory"] == "3000m"


def test_the_users_conf_wins_over_the_defaults_and_adds_keys():
    spec = SparkSpec(
        conf={"spark.executor.memory": "1g", "spark.sql.shuffle.partitions": "8"},
    )
    entries = job_conf_entries(spec, "spark://n1:1", "/run/ev", "/tmp/l", 3000)
    assert entries["spark.executor.memory"] == "1g"
    assert entries["spark.sql.shuffle.partitions"] == "8"
    assert entries["spark.master"] == "spark://n1:1"


def test_defaults_conf_is_one_key_value_line_each():
    text = defaults_conf({"spark.master": "spark://n1:1", "spark.app.name": "a b"})
    assert text == "spark.master spark://n1:1\nspark.app.name a b\n"
    assert defaults_conf({}) == ""


# --- scratch and Spark home ---------------------------------------------------------------
@pytest.mark.parametrize("inside", ["", "scratch", "a/b"])
def test_a_local_dir_in_the_output_dir_is_refused(tmp_path, inside):
    out = tmp_path / "run"
    out.mkdir()
    spec = SparkSpec(local_dir=str(out / inside) if inside else str(out))
    with pytest.raises(SparkStartError, match="inside the run's output dir"):
        scratch_dir(spec, out, "123", "g-0000")


def test_a_tmpdir_in_the_output_dir_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("TMPDIR", str(out / "tmp"))
    with pytest.raises(SparkStartError, match="set spark.local_dir or TMPDIR"):
        scratch_dir(SparkSpec(), out, "123", "g-0000")


def test_tmp_is_accepted_and_the_dir_is_named_by_job_and_batch(tmp_path, monkeypatch):
    monkeypatch.delenv("TMPDIR", raising=False)
    got = scratch_dir(SparkSpec(), tmp_path / "run", "123", "g-0000")
    assert got == Path("/tmp").resolve() / "jobforge-spark-123-g-0000"
    explicit = scratch_dir(SparkSpec(local_dir="/tmp"), tmp_path / "run", "7/8", "a b")
    assert explicit == Path("/tmp").resolve() / "jobforge-spark-7_8-a_b"


def test_the_output_dirs_parent_is_a_fine_local_dir(tmp_path):
    got = scratch_dir(SparkSpec(local_dir=str(tmp_path)), tmp_path / "run", "1", "b")
    assert got.parent == tmp_path.resolve()


def test_a_spark_home_without_spark_class_is_refused(tmp_path):
    (tmp_path / "bin").mkdir()
    with pytest.raises(SparkStartError) as info:
        find_spark_home(SparkSpec(spark_home=str(tmp_path)))
    assert str(info.value) == f"Spark home {tmp_path} has no executable bin/spark-class"


def test_a_spark_class_that_is_not_executable_is_refused(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "spark-class").write_text("#!/bin/sh\n")
    with pytest.raises(SparkStartError, match="no executable bin/spark-class"):
        find_spark_home(SparkSpec(spark_home=str(tmp_path)))


def test_an_executable_spark_class_makes_a_spark_home(tmp_path):
    home = fake_spark_home(tmp_path, "exit 0")
    assert find_spark_home(SparkSpec(spark_home=str(home))) == str(home)


# --- the worker step ----------------------------------------------------------------------
def cluster(tmp_path: Path, spec: SparkSpec | None = None) -> SparkCluster:
    c = SparkCluster(spec or SparkSpec(), tmp_path / "run", "g-0000", "/venv/bin/python")
    c.scratch = tmp_path / "scratch"
    c.master_url = "spark://n1:41000"
    c.home = "/opt/spark"
    return c


WORKER = ["/venv/bin/python", "-m", "airflow_jobforge.node", "spark-worker"]


def test_under_slurm_the_workers_are_one_srun_step_with_a_task_per_node(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "2")
    monkeypatch.setattr(spark.shutil, "which", lambda name: f"/usr/bin/{name}")
    c = cluster(tmp_path, SparkSpec(worker_cores=4))
    assert c.under_slurm and c.node_count == 2
    argv = c.worker_argv(6144)
    assert argv[:5] == ["srun", "--overlap", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1"]
    start = argv.index("/venv/bin/python")
    assert argv[start : start + 4] == WORKER
    assert all(a.startswith("--") for a in argv[1:start])  # srun's options only
    assert all(type(a) is str for a in argv)
    c.under_slurm = False
    assert argv[start:] == c.worker_argv(6144)  # each task runs the command of the local case
    assert argv[-2:] == ["--cores", "4"]


def test_without_slurm_the_worker_is_the_python_command_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    c = cluster(tmp_path)
    assert not c.under_slurm and c.node_count == 1
    argv = c.worker_argv(2048)
    assert argv[:4] == WORKER
    assert argv[4:] == [
        "--master",
        "spark://n1:41000",
        "--memory-mb",
        "2048",
        "--scratch",
        str(tmp_path / "scratch"),
        "--logs",
        str(tmp_path / "run" / "spark" / "g-0000" / "logs"),
        "--spark-home",
        "/opt/spark",
    ]
    assert all(type(a) is str for a in argv)
    assert "-c" not in argv and not any(a in ("bash", "sh") for a in argv)


def test_slurm_job_id_without_srun_is_no_slurm(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "3")
    monkeypatch.setattr(spark.shutil, "which", lambda name: None)
    c = cluster(tmp_path)
    assert not c.under_slurm and c.node_count == 1
    assert c.worker_argv(1024)[:4] == WORKER


def test_the_worker_argv_is_what_the_spark_worker_command_takes(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    got = []
    monkeypatch.setattr(node_main, "run_worker", lambda *args: got.append(args) or 0)
    argv = cluster(tmp_path, SparkSpec(worker_cores=3)).worker_argv(2048)
    assert node_main.main(argv[3:]) == 0
    assert got == [
        (
            "spark://n1:41000",
            2048,
            str(tmp_path / "scratch"),
            str(tmp_path / "run" / "spark" / "g-0000" / "logs"),
            "/opt/spark",
            3,
        )
    ]


# --- the runner with a cluster that does not start ----------------------------------------
def fake_spark_home(root: Path, body: str) -> Path:
    home = root / "spark-home"
    (home / "bin").mkdir(parents=True)
    script = home / "bin" / "spark-class"
    script.write_text(f"#!/bin/bash\n{body}\n", encoding="utf-8")
    script.chmod(0o755)
    return home


def spark_batch(root: Path, spark_spec: SparkSpec) -> BatchSpec:
    return BatchSpec(
        batch="b",
        jobs=(
            JobSpec("first", f"touch {root}/ran.first"),
            JobSpec("second", f"touch {root}/ran.second", blocked_by=("first",)),
            JobSpec("third", f"touch {root}/ran.third"),
        ),
        num_processes=1,
        spark=spark_spec,
    )


def assert_every_job_canceled_once(root: Path, out: Path, reason_check) -> str:
    records = list(read_records(results_file(out, "b")))
    assert sorted(r.name for r in records) == ["first", "second", "third"]
    assert {r.status for r in records} == {"canceled"}
    reasons = {r.reason for r in records}
    assert len(reasons) == 1
    reason = reasons.pop()
    assert reason is not None and reason_check(reason), reason
    assert all(r.start is None and r.return_code is None for r in records)
    assert not list(root.glob("ran.*"))  # no job ran
    failed = [e for e in read_events(out) if e.type == SPARK_CLUSTER_FAILED]
    assert len(failed) == 1 and failed[0].batch == "b" and failed[0].message == reason
    return reason


def test_a_spark_home_without_spark_class_cancels_every_job_with_why(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    home = tmp_path / "no-spark"
    home.mkdir()
    out = tmp_path / "out"
    spec = spark_batch(tmp_path, SparkSpec(spark_home=str(home), worker_memory="1G"))
    assert run_batch(spec, out) != 0
    reason = assert_every_job_canceled_once(
        tmp_path,
        out,
        lambda r: r.startswith("Spark home") and "has no executable bin/spark-class" in r,
    )
    assert str(home) in reason
    assert not (out / "job-output" / "first.out").exists()


def test_a_master_that_exits_at_once_ends_the_start_fast_with_its_log(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    home = fake_spark_home(tmp_path, 'echo "Error: JAVA_HOME is not set" >&2\nexit 1')
    out = tmp_path / "out"
    scratch = tmp_path / "local"
    spec = spark_batch(
        tmp_path,
        SparkSpec(
            spark_home=str(home),
            worker_memory="1G",
            local_dir=str(scratch),
            startup_timeout_s=60,
        ),
    )
    started = time.monotonic()
    assert run_batch(spec, out) != 0
    assert time.monotonic() - started < 10  # not the 60 s timeout
    reason = assert_every_job_canceled_once(
        tmp_path, out, lambda r: r.startswith("Spark master did not start on")
    )
    assert "Error: JAVA_HOME is not set" in reason
    assert "exit code 1" in reason
    host = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    assert f"on {host}" in reason
    master_log = out / "spark" / "b" / "logs" / "master.log"
    assert "JAVA_HOME is not set" in master_log.read_text()
    # the node-local scratch of the cluster is gone with it
    assert not list(scratch.glob("jobforge-spark-*"))


def test_the_master_is_started_by_spark_class_with_kernel_ports(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    args = tmp_path / "args"
    home = fake_spark_home(tmp_path, f'printf "%s\\n" "$@" > {args}\nexit 3')
    spec = spark_batch(
        tmp_path, SparkSpec(spark_home=str(home), worker_memory="1G", local_dir="/tmp")
    )
    assert run_batch(spec, tmp_path / "out") != 0
    argv = args.read_text().splitlines()
    assert argv[0] == "org.apache.spark.deploy.master.Master"
    assert argv[argv.index("--port") + 1] == "0"
    assert argv[argv.index("--webui-port") + 1] == "0"
