"""Jobs in containers on the real cluster, with the runtimes Debian has: podman and
charliecloud (scripts/containers/build-images.sh: a debootstrap image whose /etc/os-release
says "jobforge-test", as podman's localhost/jobforge-test:1 and as a charliecloud directory).

Each job's command runs in the image, the node runner on the host: the job sees the image's
/etc/os-release, a bound input file and the run's output dir; its exit code is its record's;
scancel ends it and leaves no container process; the resource monitor samples it. Apptainer
has no Debian package: its command lines are unit-tested only (tests/unit/test_containers.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from airflow_jobforge.config import SlurmParams
from airflow_jobforge.rundir import collect_results, read_records, results_file
from airflow_jobforge.rundir.batches import BatchSpec, ContainerSpec, JobSpec
from airflow_jobforge.rundir.samples import read_monitor_file
from airflow_jobforge.slurm.script import SubmitRequest

from .airflow_helpers import run
from .conftest import REPO, shared_dir, unavailable, wait_file, wait_terminal

pytestmark = [pytest.mark.slurm]

IMAGE_OS = 'PRETTY_NAME="jobforge test image (Debian 12 minbase)"'
RUNTIMES = ("podman", "charliecloud")


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """runtime -> image, built once (idempotent) by the test set-up's own script."""
    if os.geteuid() != 0:
        unavailable("the container tests need root: scripts/containers/build-images.sh")
    done = subprocess.run(
        [str(REPO / "scripts" / "containers" / "build-images.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/containers/build-images.sh failed:\n{done.stderr[-3000:]}")
    env = dict(
        line.split("=", 1)
        for line in Path("/var/lib/jobforge-containers/env").read_text().splitlines()
        if "=" in line
    )
    return {
        "podman": env["JOBFORGE_PODMAN_IMAGE"],
        "charliecloud": env["JOBFORGE_CHARLIECLOUD_IMAGE"],
    }


def container_spec(images: dict[str, str], runtime: str, data: Path) -> ContainerSpec:
    # ch-run mounts read-write only; podman's read-only mount is said with :ro
    bind = f"{data}:/data:ro" if runtime == "podman" else f"{data}:/data"
    return ContainerSpec(
        runtime=runtime, image=images[runtime], bind=(bind,), env={"GREETING": "hi"}
    )


def submit(local, out: Path, jobs: list[JobSpec], container: ContainerSpec, **options):
    request = SubmitRequest(
        tag=f"it-ct-{uuid.uuid4().hex[:10]}",
        batch=BatchSpec(
            "ct-0000",
            tuple(jobs),
            num_processes=options.pop("num_processes", 2),
            container=container,
            monitor_interval_s=options.pop("monitor_interval_s", 0.0),
        ),
        slurm=SlurmParams(**{"walltime": "5", **options}),
        output_dir=str(out),
        python=local.python,
    )
    return local.client.submit(request)


def container_processes(marker: str, hpc_job_id: str) -> list[str]:
    """Processes (any node: they share this machine's process table) running `marker`, and
    podman containers of the SLURM job still known."""
    found = subprocess.run(
        ["pgrep", "-af", marker], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    left = [line for line in found if "pgrep" not in line]
    podman = subprocess.run(
        [
            "podman",
            "ps",
            "-a",
            "--filter",
            "label=jobforge.batch=ct-0000",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return left + [f"podman container {cid}" for cid in podman]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_job_in_the_image_sees_its_os_a_bound_file_and_writes_the_output_dir(
    cluster, local, images, runtime
):
    out = shared_dir(cluster)
    data = out / "data"
    data.mkdir()
    (data / "input.txt").write_text("input from the host\n")
    jobs = [
        JobSpec(
            "inside",
            "grep PRETTY_NAME /etc/os-release; cat /data/input.txt; "
            'echo "$GREETING $JOBFORGE_JOB_NAME"; echo written > "$JOBFORGE_OUTPUT_DIR/inside.txt"',
        ),
        JobSpec("fails", "echo about to fail >&2; exit 7"),
    ]

    job = submit(local, out, jobs, container_spec(images, runtime, data))
    wait_terminal(local.client, job, timeout=120)

    records = collect_results(out)
    assert records["inside"].succeeded, records["inside"]
    assert records["fails"].status == "finished" and records["fails"].return_code == 7
    printed = (out / "job-output" / "inside.out").read_text().splitlines()
    assert printed == [IMAGE_OS, "input from the host", "hi inside"]
    host_os = Path("/etc/os-release").read_text()
    assert IMAGE_OS not in host_os, "the host must not look like the image"
    assert (out / "inside.txt").read_text() == "written\n"
    assert (out / "job-output" / "fails.err").read_text() == "about to fail\n"
    assert container_processes(str(out / "inside.txt"), job.job_id) == []


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_scancel_mid_job_leaves_no_container_process_and_records_every_job(
    cluster, local, images, runtime
):
    out = shared_dir(cluster)
    marker = f"sleep 3{uuid.uuid4().int % 10**6:06d}"
    jobs = [
        JobSpec("long", f"touch $JOBFORGE_OUTPUT_DIR/started; {marker}"),
        JobSpec("queued", "echo never", blocked_by=("long",)),
    ]

    job = submit(local, out, jobs, container_spec(images, runtime, out), num_processes=1)
    wait_file(out / "started", timeout=60)
    time.sleep(1)
    assert container_processes(marker, job.job_id), "the job runs in its container"
    subprocess.run(["scancel", job.job_id], check=True)
    wait_terminal(local.client, job, timeout=120)

    records = list(read_records(results_file(out, "ct-0000")))
    assert sorted(r.name for r in records) == ["long", "queued"], "one record per job"
    by_name = {r.name: r for r in records}
    assert by_name["long"].status == "missing"
    assert by_name["queued"].status == "canceled"
    deadline = time.monotonic() + 30
    while container_processes(marker, job.job_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert container_processes(marker, job.job_id) == []


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_resource_monitor_samples_a_job_in_a_container(cluster, local, images, runtime):
    out = shared_dir(cluster)
    busy = "x=0; while [ $x -lt 4000000 ]; do x=$((x+1)); done"
    job = submit(
        local,
        out,
        [JobSpec("busy", busy)],
        container_spec(images, runtime, out),
        monitor_interval_s=0.5,
    )
    wait_terminal(local.client, job, timeout=120)

    assert collect_results(out)["busy"].succeeded
    samples = [s for s in read_monitor_file(out / "monitor" / "ct-0000.jsonl") if s.get("job")]
    assert samples, "no sample of the container job"
    assert max(s["cpu_pct"] for s in samples) > 50, samples
    assert max(s["nprocs"] for s in samples) >= 1


def test_a_config_with_a_podman_container_runs_through_the_dag(cluster, images, tmp_path):
    out = shared_dir(cluster)
    config = tmp_path / "podman.json"
    config.write_text(
        json.dumps(
            {
                "jobs": [{"name": "where", "command": "grep -c jobforge-test /etc/os-release"}],
                "submission_groups": [
                    {
                        "name": "ct",
                        "slurm": {"walltime": "5"},
                        "container": {"runtime": "podman", "image": images["podman"]},
                    }
                ],
            }
        )
    )

    state, summary, run_dir = run(str(config), backend="slurm", output=str(out))

    assert state == "success", summary
    assert (run_dir / "job-output" / "where.out").read_text().strip() != "0"


@pytest.mark.slow
def test_a_walltime_hit_mid_job_leaves_no_podman_container(cluster, local, images):
    out = shared_dir(cluster)
    marker = f"sleep 4{uuid.uuid4().int % 10**6:06d}"
    jobs = [JobSpec("long", marker)]

    job = submit(local, out, jobs, container_spec(images, "podman", out), walltime="1")
    status = wait_terminal(local.client, job, timeout=240)

    assert status.state == "TIMEOUT"
    (record,) = read_records(results_file(out, "ct-0000"))
    assert record.status == "missing"
    deadline = time.monotonic() + 30
    while container_processes(marker, job.job_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert container_processes(marker, job.job_id) == []
