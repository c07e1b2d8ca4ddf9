"""Spark clusters in real allocations of the multi-node test cluster (scripts/slurm/start.sh
--nodes 3; Java from Debian, pyspark from the package's `spark` extra): a PySpark word count on
one node and across two, through real Airflow (dag.test, backend slurm); a failing Spark job
fails its own record only; scancel mid-job and a walltime hit leave no Spark JVM on any node
and a record for every job.

The namespace nodes share this machine's process table, so `pgrep` here sees every node's
JVMs: a JVM left on any node is found.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from airflow_jobforge.config import SlurmParams
from airflow_jobforge.rundir import collect_results, read_records, results_file
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec, SparkSpec
from airflow_jobforge.rundir.events import read_events
from airflow_jobforge.rundir.spark import read_cluster_infos, read_spark_apps
from airflow_jobforge.slurm.script import SubmitRequest

from .airflow_helpers import run
from .conftest import shared_dir, unavailable, wait_idle, wait_terminal, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SPARK_PROCESS = "org.apache.spark"
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")

WORDCOUNT = """\
import json, sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("wordcount").getOrCreate()
print("master", spark.sparkContext.master, flush=True)
lines = spark.sparkContext.textFile(sys.argv[1], minPartitions=4)
counts = dict(lines.flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b)
              .collect())
with open(sys.argv[2], "w") as out:
    json.dump(counts, out)
spark.stop()
"""

FAILING = """\
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("failing").getOrCreate()
spark.sparkContext.parallelize(range(4), 2).map(lambda x: 1 // 0).collect()
"""

SLOW = """\
import time
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("slow").getOrCreate()
spark.sparkContext.parallelize(range(2), 2).map(lambda x: time.sleep(600) or x).collect()
"""


@pytest.fixture(scope="module")
def spark_ready() -> None:
    if shutil.which("java") is None:
        unavailable("Spark needs Java: apt-get install openjdk-17-jre-headless (make cluster)")
    if importlib.util.find_spec("pyspark") is None:
        unavailable("Spark needs pyspark: pip install -e '.[spark]' (make venv)")


def spark_jvms() -> list[str]:
    out = subprocess.run(
        ["pgrep", "-af", SPARK_PROCESS], capture_output=True, text=True, check=False
    ).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def write_input(directory: Path, lines: int = 20_000) -> tuple[Path, Counter]:
    """A text file of words in a fixed pattern, and its true counts."""
    path = directory / "words.txt"
    expected: Counter = Counter()
    with path.open("w") as handle:
        for i in range(lines):
            words = [WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 5)]
            expected.update(words)
            handle.write(" ".join(words) + "\n")
    return path, expected


def script(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(0o644)
    return path


def spark_group(partition: str, nodes: int, walltime: str = "10") -> dict:
    return {
        "name": f"spark{nodes}",
        "slurm": {"partition": partition, "walltime": walltime, "nodes": nodes, "mem": "3G"},
        "spark": {"conf": {"spark.sql.shuffle.partitions": "4"}},
    }


@pytest.mark.parametrize("nodes", [1, 2])
def test_a_pyspark_word_count_runs_on_the_allocations_cluster_with_a_worker_per_node(
    cluster, multinode, spark_ready, tmp_path, nodes
):
    out = shared_dir(cluster)
    words, expected = write_input(out)
    counter = script(out, "wordcount.py", WORDCOUNT)
    counts = out / "counts.json"
    group = spark_group(multinode.partition, nodes)
    jobs = [
        {
            "name": "wordcount",
            "command": f"python {counter} {words} {counts}",
            "submission_group": group["name"],
        }
    ]

    state, summary, run_dir = run(
        str(write_config(tmp_path, jobs, group)), backend="slurm", output=str(out / "run")
    )

    assert state == "success", summary
    assert json.loads(counts.read_text()) == dict(expected)
    (info,) = read_cluster_infos(run_dir)
    assert info.workers_alive == nodes
    assert len(info.nodes) == nodes and set(info.nodes) <= set(multinode.nodes)
    printed = (run_dir / "job-output" / "wordcount.out").read_text()
    assert f"master {info.master_url}" in printed, "the job must reach the cluster, not local"
    record = collect_results(run_dir)["wordcount"]
    (app,) = read_spark_apps(run_dir)
    assert record.spark_apps == [app.app_id]
    assert app.name == "wordcount" and app.complete and app.exit_code == 0
    assert app.executors == nodes
    assert info.leftover == [] and info.stopped is not None
    print(
        f"\nspark {nodes} node(s): cluster start {info.start_s:.2f} s "
        f"(runner start -> {nodes} worker(s) alive), word count job {record.exec_time_s:.2f} s, "
        f"application {app.duration_s:.2f} s"
    )
    wait_idle(multinode.nodes)
    assert spark_jvms() == []


def submit_spark_batch(local, out: Path, jobs: list[JobSpec], slurm: SlurmParams):
    request = SubmitRequest(
        tag=f"it-spark-{out.name[-8:]}",
        batch=BatchSpec("spark-0000", tuple(jobs), num_processes=1, spark=SparkSpec()),
        slurm=slurm,
        output_dir=str(out),
        python=local.python,
    )
    return local.client.submit(request)


def test_a_failing_spark_job_fails_its_record_and_the_next_spark_job_still_runs(
    cluster, multinode, spark_ready, local
):
    out = shared_dir(cluster)
    words, expected = write_input(out, 2_000)
    failing = script(out, "failing.py", FAILING)
    counter = script(out, "wordcount.py", WORDCOUNT)
    jobs = [
        JobSpec("fails", f"python {failing}"),
        JobSpec("counts", f"python {counter} {words} {out}/counts.json"),
    ]
    slurm = SlurmParams(partition=multinode.partition, walltime="10", nodes=2, mem="3G")

    job = submit_spark_batch(local, out, jobs, slurm)
    wait_terminal(local.client, job, timeout=300)

    records = collect_results(out)
    assert records["fails"].status == "finished" and records["fails"].return_code != 0
    assert records["counts"].succeeded
    assert json.loads((out / "counts.json").read_text()) == dict(expected)
    assert records["fails"].spark_apps and records["counts"].spark_apps
    assert records["fails"].spark_apps != records["counts"].spark_apps
    # The task's traceback, printed by an executor on a node, is kept in the run dir.
    (app,) = records["fails"].spark_apps
    logs = out / "spark" / "spark-0000" / "logs" / "executors"
    assert any("ZeroDivisionError" in p.read_text() for p in logs.glob(f"*/{app}/*/stderr"))
    wait_idle(multinode.nodes)
    assert spark_jvms() == []


def wait_for_app(out: Path, job: str, timeout: float = 180) -> None:
    """Until the job's application has started (its event log exists)."""
    events = out / "spark" / "spark-0000" / "events" / job
    deadline = time.monotonic() + timeout
    while not (events.is_dir() and any(events.iterdir())):
        assert time.monotonic() < deadline, f"no Spark application of {job} started"
        time.sleep(0.5)
    time.sleep(3)  # its executors are up and working


def assert_all_recorded_and_no_jvm(out: Path, names: list[str], nodes) -> None:
    records = list(read_records(results_file(out, "spark-0000")))
    assert sorted(r.name for r in records) == sorted(names), "exactly one record per job"
    wait_idle(nodes)
    assert spark_jvms() == [], "a Spark JVM outlived its allocation"


def test_scancel_mid_job_leaves_no_spark_jvm_on_any_node_and_records_every_job(
    cluster, multinode, spark_ready, local
):
    out = shared_dir(cluster)
    slow = script(out, "slow.py", SLOW)
    jobs = [JobSpec("slow", f"python {slow}"), JobSpec("after", "echo never")]
    slurm = SlurmParams(partition=multinode.partition, walltime="10", nodes=2, mem="3G")

    job = submit_spark_batch(local, out, jobs, slurm)
    wait_for_app(out, "slow")
    assert spark_jvms(), "the cluster and the application run"
    subprocess.run(["scancel", job.job_id], check=True)
    status = wait_terminal(local.client, job, timeout=120)

    assert status.state == "CANCELLED"
    assert_all_recorded_and_no_jvm(out, ["slow", "after"], multinode.nodes)
    records = collect_results(out)
    assert records["slow"].status == "missing" and records["slow"].spark_apps
    assert records["after"].status == "canceled"
    ready = [e for e in read_events(out) if e.type == "spark_cluster_ready"]
    assert len(ready) == 1 and ready[0].data["workers_alive"] == 2


def test_a_walltime_hit_mid_job_leaves_no_spark_jvm_and_records_every_job(
    cluster, multinode, spark_ready, local
):
    out = shared_dir(cluster)
    slow = script(out, "slow.py", SLOW)
    jobs = [JobSpec("slow", f"python {slow}"), JobSpec("after", "echo never")]
    slurm = SlurmParams(partition=multinode.partition, walltime="1", nodes=2, mem="3G")

    job = submit_spark_batch(local, out, jobs, slurm)
    status = wait_terminal(local.client, job, timeout=240)

    assert status.state == "TIMEOUT"
    assert_all_recorded_and_no_jvm(out, ["slow", "after"], multinode.nodes)
    records = collect_results(out)
    assert records["slow"].status == "missing"
    assert records["after"].status == "canceled"


def test_a_cluster_that_cannot_start_cancels_every_job_with_the_masters_words(
    cluster, multinode, spark_ready, local
):
    out = shared_dir(cluster)
    # A Spark home with bin/ but no jars: spark-class says so and the master exits.
    pyspark = importlib.util.find_spec("pyspark")
    assert pyspark is not None and pyspark.origin is not None
    broken = out / "broken-spark"
    shutil.copytree(Path(pyspark.origin).parent / "bin", broken / "bin")
    jobs = [JobSpec("a", "echo a"), JobSpec("b", "echo b")]
    slurm = SlurmParams(partition=multinode.partition, walltime="5", nodes=1, mem="3G")
    request = SubmitRequest(
        tag=f"it-spark-bad-{out.name[-8:]}",
        batch=BatchSpec(
            "spark-0000", tuple(jobs), num_processes=1, spark=SparkSpec(spark_home=str(broken))
        ),
        slurm=slurm,
        output_dir=str(out),
        python=sys.executable,
    )

    started = time.monotonic()
    job = local.client.submit(request)
    wait_terminal(local.client, job, timeout=180)

    assert time.monotonic() - started < 60, "a master that exits is noticed at once"
    records = collect_results(out)
    assert {r.status for r in records.values()} == {"canceled"}
    (reason,) = {r.reason for r in records.values()}
    assert reason.startswith("Spark master did not start on jf-n"), reason
    assert "Failed to find Spark jars directory" in reason
    failed = [e for e in read_events(out) if e.type == "spark_cluster_failed"]
    assert failed and failed[0].message == reason
    wait_idle(multinode.nodes)
    assert spark_jvms() == []
