"""Jobs in container images: the group's `container` config, what the planner and the batch
file carry, the argv per runtime (pure builders), the node-side checks and cleanup, the
runner running jobs through a runtime, and the monitor counting processes named by a pid
file. No real runtime runs here: fake programs on PATH stand in for podman, ch-run and
apptainer (the real ones: tests/integration/test_containers.py)."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

import pytest

from airflow_jobforge.config import ContainerParams, SlurmParams, parse_configuration
from airflow_jobforge.containers.jobs import (
    ContainerJob,
    cleanup_argv,
    default_mounts,
    job_container_argv,
    mount_points,
)
from airflow_jobforge.errors import ConfigError
from airflow_jobforge.node import monitor
from airflow_jobforge.node.containers import ContainerUnavailable, JobContainers
from airflow_jobforge.node.runner import run_batch
from airflow_jobforge.planning.planner import batch_spec, plan_batches
from airflow_jobforge.rundir import read_records, results_file
from airflow_jobforge.rundir.batches import BatchSpec, ContainerSpec, JobSpec, array_task
from airflow_jobforge.rundir.events import read_events
from airflow_jobforge.rundir.samples import read_monitor
from airflow_jobforge.slurm.script import SubmitRequest, sbatch_job

HOST = socket.gethostname()
JOB_ARGV = ["bash", "-c", "echo $X; exit 3"]
ENV_VALUE = "hello world $HOME"
BINDS = ("/data", "/ref:/mnt/ref:ro", "/scratch:/scratch:rw")


# --- config ---------------------------------------------------------------------------------
def config_with(container: dict, group: str = "g") -> dict:
    return {
        "jobs": [{"name": "a", "command": "true", "submission_group": group}],
        "submission_groups": [{"name": group, "container": container}],
    }


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_configuration(data, file="cfg.json")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    "container",
    [
        {"image": "/images/sim.sif"},
        {"image": "/images/sim.sif", "runtime": "singularity", "scope": "runner"},
        {"image": "docker://x/y:1", "runtime": "apptainer"},
        {"image": "localhost/sim:1", "runtime": "podman", "gpus": True},
        {"image": "docker.io/library/python@sha256:0123abcd", "runtime": "podman"},
        {"image": "/images/sim", "runtime": "charliecloud"},
        {
            "image": "/images/sim.sif",
            "bind": ["/data", "/ref:/mnt/ref:ro", "/scratch:/scratch:rw"],
            "env": {"GREETING": "hello world $HOME", "_X1": ""},
            "pass_env": ["HOME", "LD_LIBRARY_PATH"],
            "workdir": "/work",
            "gpus": True,
            "exec_args": ["--cleanenv"],
        },
    ],
)
def test_each_runtime_with_a_valid_image_is_accepted(container):
    config = parse_configuration(config_with(container))
    params = config.group("g").container
    assert params is not None and params.image == container["image"]
    assert params.runtime == container.get("runtime", "apptainer")
    assert params.scope == container.get("scope", "job")


@pytest.mark.parametrize(
    ("container", "said"),
    [
        ({"image": "local host/sim:1", "runtime": "podman"}, "podman image 'local host/sim:1'"),
        ({"image": "localhost/sim:1\x07", "runtime": "podman"}, "control characters"),
        ({"image": "images/sim", "runtime": "charliecloud"}, "absolute directory path"),
        ({"image": "images/sim.sif"}, "must be an absolute path or a URI"),
        ({"image": "sim.sif", "runtime": "singularity"}, "must be an absolute path or a URI"),
        (
            {"image": "localhost/sim:1", "runtime": "podman", "scope": "runner"},
            "scope runner needs apptainer or singularity",
        ),
        (
            {"image": "/images/sim", "runtime": "charliecloud", "scope": "runner"},
            "scope runner needs apptainer or singularity",
        ),
        ({"image": "/images/sim", "runtime": "charliecloud", "gpus": True}, "ch-fromhost"),
        ({"image": "/i.sif", "bind": ["data"]}, "'data' must be an absolute path"),
        ({"image": "/i.sif", "bind": ["/a:b"]}, "'b' must be an absolute path"),
        ({"image": "/i.sif", "bind": ["/a:/b:ro:x"]}, "SRC[:DST[:OPTS]]"),
        ({"image": "/i.sif", "bind": ["/a:/b:rx"]}, "options must be ro or rw"),
        (
            {"image": "/img", "runtime": "charliecloud", "bind": ["/a:/b:ro"]},
            "charliecloud binds take no options",
        ),
        ({"image": "/i.sif", "env": {"MY-VAR": "1"}}, "env name 'MY-VAR'"),
        ({"image": "/i.sif", "env": {"1X": "1"}}, "env name '1X'"),
        ({"image": "/i.sif", "env": {"X": "a\nb"}}, "without control characters"),
        ({"image": "/i.sif", "pass_env": ["MY-VAR"]}, "pass_env name 'MY-VAR'"),
        ({"image": "/i.sif", "workdir": "work"}, "workdir 'work' must be an absolute path"),
    ],
)
def test_a_bad_container_is_refused_naming_its_group(container, said):
    problems = problems_of(config_with(container))
    assert len(problems) == 1, problems
    assert problems[0].startswith("group 'g': container")
    assert said in problems[0]


def test_every_container_problem_of_a_file_is_reported_at_once():
    data = {
        "jobs": [
            {"name": "a", "command": "true", "submission_group": "g"},
            {"name": "b", "command": "true", "submission_group": "h"},
        ],
        "submission_groups": [
            {"name": "g", "container": {"image": "/i.sif", "bind": ["rel"], "env": {"A-B": "1"}}},
            {"name": "h", "container": {"image": "a b", "runtime": "podman"}},
        ],
    }
    problems = problems_of(data)
    assert len(problems) == 3, problems
    assert any(p.startswith("group 'g': container.bind") and "'rel'" in p for p in problems)
    assert any(p.startswith("group 'g': container.env") and "'A-B'" in p for p in problems)
    assert any(p.startswith("group 'h': container") and "podman image 'a b'" in p for p in problems)


# --- planner, batch file, SLURM script ------------------------------------------------------
def planned(container: dict) -> tuple[BatchSpec, ContainerParams | None]:
    config = parse_configuration(config_with(container))
    plan = plan_batches(config)
    return batch_spec(config, plan, plan.batches[0]), config.group("g").container


def test_scope_job_puts_the_container_into_the_batch_file_with_its_values():
    spec, _ = planned(
        {
            "image": "localhost/sim:1",
            "runtime": "podman",
            "bind": ["/data:/data:ro"],
            "env": {"A": "1"},
            "pass_env": ["HOME"],
            "workdir": "/work",
            "gpus": True,
            "exec_args": ["--shm-size=1g"],
        }
    )
    assert spec.container == ContainerSpec(
        runtime="podman",
        image="localhost/sim:1",
        bind=("/data:/data:ro",),
        env={"A": "1"},
        pass_env=("HOME",),
        workdir="/work",
        gpus=True,
        args=("--shm-size=1g",),
    )


def test_scope_runner_leaves_the_batch_file_alone_and_wraps_the_node_runner_in_the_script():
    spec, params = planned({"image": "/i.sif", "bind": ["/x"], "scope": "runner"})
    assert spec.container is None
    script = sbatch_job(
        SubmitRequest(
            tag="r1.g-0000", batch=spec, slurm=SlurmParams(), output_dir="/out", container=params
        )
    ).script
    assert "apptainer exec --bind /x /i.sif python3 -m airflow_jobforge.node" in script


def test_scope_job_does_not_wrap_the_node_runner_in_the_script():
    spec, params = planned({"image": "/i.sif", "bind": ["/x"]})
    assert spec.container is not None
    script = sbatch_job(
        SubmitRequest(
            tag="r1.g-0000", batch=spec, slurm=SlurmParams(), output_dir="/out", container=params
        )
    ).script
    assert "apptainer exec" not in script
    assert "python3 -m airflow_jobforge.node run-batch" in script


def full_spec(runtime: str = "apptainer", image: str = "/images/sim.sif", **kw) -> ContainerSpec:
    values = dict(
        runtime=runtime,
        image=image,
        bind=BINDS,
        env={"GREETING": ENV_VALUE},
        pass_env=("HOME",),
        workdir=None,
        gpus=True,
        args=("--cleanenv",),
    )
    return ContainerSpec(**{**values, **kw})


def test_a_batch_with_a_container_survives_its_dict_and_json_with_tuples_kept():
    spec = BatchSpec("g-0000", (JobSpec("a", "true"), JobSpec("b", "true")), container=full_spec())
    again = BatchSpec.from_dict(spec.to_dict())
    assert again == spec and type(again.container.bind) is tuple
    through_json = BatchSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert through_json == spec
    container = through_json.container
    assert container is not None
    assert type(container.bind) is tuple and type(container.pass_env) is tuple
    assert type(container.args) is tuple
    assert array_task(spec, 1).container == spec.container


def test_a_batch_file_without_a_container_reads_back_as_none():
    data = BatchSpec("g-0000", (JobSpec("a", "true"),)).to_dict()
    assert data["container"] is None
    data.pop("container")  # a batch file written before containers
    assert BatchSpec.from_dict(data).container is None


def test_a_batch_file_round_trips_through_its_file(tmp_path):
    spec = BatchSpec("g-0000", (JobSpec("a", "true"),), container=full_spec("podman", "x/y:1"))
    spec.dump(tmp_path / "b.json")
    assert BatchSpec.load(tmp_path / "b.json") == spec


# --- argv builders --------------------------------------------------------------------------
def job_ctx(**kw) -> ContainerJob:
    values = dict(
        job="a",
        batch="cpu-0000",
        allocation="4242",
        cwd="/home/u/proj",
        output_dir="/runs/r1",
        env_names=("JOBFORGE_BATCH", "JOBFORGE_JOB_NAME", "HOME"),
        rootless=True,
        pidfile="/tmp/jf/a.conmon.pid",
    )
    return ContainerJob(**{**values, **kw})


@pytest.mark.parametrize("runtime", ["apptainer", "singularity"])
def test_apptainer_binds_pwd_env_and_nv_come_before_the_image_then_the_job_argv(runtime):
    argv = job_container_argv(full_spec(runtime), job_ctx(), list(JOB_ARGV))
    assert argv == [
        runtime,
        "exec",
        "--bind",
        "/runs/r1",
        "--bind",
        "/home/u/proj",
        "--bind",
        "/data",
        "--bind",
        "/ref:/mnt/ref:ro",
        "--bind",
        "/scratch:/scratch:rw",
        "--pwd",
        "/home/u/proj",
        "--env",
        f"GREETING={ENV_VALUE}",
        "--nv",
        "--cleanenv",
        "/images/sim.sif",
        *JOB_ARGV,
    ]


def test_apptainer_without_gpus_env_or_args_and_with_a_workdir():
    spec = ContainerSpec(runtime="apptainer", image="docker://x/y:1", workdir="/work")
    argv = job_container_argv(spec, job_ctx(), list(JOB_ARGV))
    assert argv == [
        "apptainer",
        "exec",
        "--bind",
        "/runs/r1",
        "--bind",
        "/home/u/proj",
        "--pwd",
        "/work",
        "docker://x/y:1",
        *JOB_ARGV,
    ]


def test_podman_runs_a_named_labelled_container_with_volumes_env_and_gpus():
    argv = job_container_argv(
        full_spec("podman", "localhost/sim:1", args=("--shm-size=1g",)),
        job_ctx(),
        list(JOB_ARGV),
    )
    assert argv == [
        "podman",
        "run",
        "--rm",
        "--init",
        "--name=jf-4242-cpu-0000-a",
        "--label=jobforge.batch=cpu-0000",
        "--label=jobforge.job=a",
        "--label=jobforge.hpc_job_id=4242",
        "--network=host",
        "--log-driver=none",
        "--conmon-pidfile=/tmp/jf/a.conmon.pid",
        "--userns=keep-id",
        "--volume",
        "/runs/r1:/runs/r1",
        "--volume",
        "/home/u/proj:/home/u/proj",
        "--volume",
        "/data:/data",
        "--volume",
        "/ref:/mnt/ref:ro",
        "--volume",
        "/scratch:/scratch:rw",
        "--workdir=/home/u/proj",
        # the runner's names, then pass_env's; HOME is in both and passed once
        "--env",
        "JOBFORGE_BATCH",
        "--env",
        "JOBFORGE_JOB_NAME",
        "--env",
        "HOME",
        "--env",
        f"GREETING={ENV_VALUE}",
        "--device",
        "nvidia.com/gpu=all",
        "--shm-size=1g",
        "localhost/sim:1",
        *JOB_ARGV,
    ]


def test_podman_as_root_without_a_pidfile_gets_neither_keep_id_nor_conmon_pidfile():
    spec = ContainerSpec(runtime="podman", image="localhost/sim:1")
    argv = job_container_argv(spec, job_ctx(rootless=False, pidfile=None), list(JOB_ARGV))
    assert not [a for a in argv if a.startswith(("--userns", "--conmon-pidfile"))]
    assert "--device" not in argv
    assert argv[-4:] == ["localhost/sim:1", *JOB_ARGV]


def test_podman_container_names_are_sanitized():
    spec = ContainerSpec(runtime="podman", image="localhost/sim:1")
    ctx = job_ctx(batch="cpu-0000.3", job="a b/c;d")
    argv = job_container_argv(spec, ctx, list(JOB_ARGV))
    assert "--name=jf-4242-cpu-0000.3-a_b_c_d" in argv
    assert cleanup_argv(spec, ctx)[-1] == "jf-4242-cpu-0000.3-a_b_c_d"


def test_charliecloud_binds_cd_and_set_env_then_the_image_and_the_job_after_a_double_dash():
    spec = full_spec("charliecloud", "/images/sim", gpus=False, args=("--private-tmp",))
    argv = job_container_argv(spec, job_ctx(), list(JOB_ARGV))
    assert argv == [
        "ch-run",
        "--bind",
        "/runs/r1",
        "--bind",
        "/home/u/proj",
        "--bind",
        "/data",
        # ch-run 0.31 has no read-only bind: `ro` is not passed on
        "--bind",
        "/ref:/mnt/ref",
        "--bind",
        "/scratch",
        "--cd=/home/u/proj",
        "--env-no-expand",
        f"--set-env=GREETING={ENV_VALUE}",
        "--private-tmp",
        "/images/sim",
        "--",
        *JOB_ARGV,
    ]


def test_charliecloud_without_env_has_no_env_options():
    spec = ContainerSpec(runtime="charliecloud", image="/images/sim", workdir="/work")
    argv = job_container_argv(spec, job_ctx(), list(JOB_ARGV))
    assert argv == [
        "ch-run",
        "--bind",
        "/runs/r1",
        "--bind",
        "/home/u/proj",
        "--cd=/work",
        "/images/sim",
        "--",
        *JOB_ARGV,
    ]


def test_a_working_dir_under_the_output_dir_is_not_mounted_twice():
    spec = ContainerSpec(runtime="apptainer", image="/i.sif")
    assert default_mounts(spec, job_ctx(cwd="/runs/r1/sub")) == [("/runs/r1", "/runs/r1", None)]
    assert default_mounts(spec, job_ctx(cwd="/runs/r1")) == [("/runs/r1", "/runs/r1", None)]
    # a sibling that only shares a prefix is no sub-directory
    assert default_mounts(spec, job_ctx(cwd="/runs/r10")) == [
        ("/runs/r1", "/runs/r1", None),
        ("/runs/r10", "/runs/r10", None),
    ]


def test_configured_binds_become_src_dst_options_mounts():
    spec = ContainerSpec(runtime="podman", image="x/y:1", bind=BINDS)
    assert default_mounts(spec, job_ctx())[2:] == [
        ("/data", "/data", None),
        ("/ref", "/mnt/ref", "ro"),
        ("/scratch", "/scratch", "rw"),
    ]


def test_only_charliecloud_needs_mount_points_and_only_podman_needs_a_cleanup():
    ctx = job_ctx()
    for runtime, image in (("apptainer", "/i.sif"), ("singularity", "/i.sif"), ("podman", "x:1")):
        assert mount_points(full_spec(runtime, image), ctx) == []
    charlie = full_spec("charliecloud", "/images/sim", gpus=False)
    assert mount_points(charlie, ctx) == [
        "/runs/r1",
        "/home/u/proj",
        "/data",
        "/mnt/ref",
        "/scratch",
    ]
    assert cleanup_argv(full_spec("podman", "x:1"), ctx) == [
        "podman",
        "rm",
        "--force",
        "--ignore",
        "--time=0",
        "jf-4242-cpu-0000-a",
    ]
    for runtime, image in (("apptainer", "/i.sif"), ("charliecloud", "/images/sim")):
        assert cleanup_argv(full_spec(runtime, image), ctx) is None


@pytest.mark.parametrize(
    ("runtime", "image"),
    [
        ("apptainer", "/i.sif"),
        ("singularity", "/i.sif"),
        ("podman", "x/y:1"),
        ("charliecloud", "/images/sim"),
    ],
)
def test_every_argv_element_is_a_str_and_the_job_command_stays_one_element(runtime, image):
    spec = full_spec(runtime, image, gpus=runtime != "charliecloud")
    argv = job_container_argv(spec, job_ctx(), list(JOB_ARGV))
    assert all(type(a) is str for a in argv)
    assert argv[-3:] == JOB_ARGV
    assert argv.count("echo $X; exit 3") == 1
    # nothing before the job's own argv starts a shell
    assert not {"bash", "sh", "-c"} & set(argv[:-3])


def test_an_unknown_runtime_is_an_error():
    with pytest.raises(ValueError, match="unknown container runtime 'docker'"):
        job_container_argv(ContainerSpec(runtime="docker", image="x"), job_ctx(), ["true"])


# --- node side: JobContainers ---------------------------------------------------------------
def fake_program(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def node(tmp_path, monkeypatch) -> Path:
    """The runner's surroundings: a known allocation, cwd and TMPDIR, all under tmp_path."""
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    return tmp_path


@pytest.mark.parametrize(
    ("runtime", "image", "program"),
    [
        ("apptainer", "/i.sif", "apptainer"),
        ("singularity", "/i.sif", "singularity"),
        ("podman", "x/y:1", "podman"),
        ("charliecloud", "/images/sim", "ch-run"),
    ],
)
def test_a_runtime_not_on_path_is_unavailable_naming_the_program_and_host(
    node, runtime, image, program
):
    empty = node / "empty-bin"
    empty.mkdir()
    spec = ContainerSpec(runtime=runtime, image=image)
    containers = JobContainers(spec, "b", node / "out", {})
    with pytest.raises(ContainerUnavailable) as info:
        containers.prepare({"PATH": str(empty)})
    assert str(info.value) == f"{runtime}: {program} is not installed on {HOST} (not on PATH)"


def test_a_podman_image_that_is_not_there_is_unavailable(node):
    fake = node / "bin"
    fake_program(fake, "podman", '[ "$1 $2" = "image exists" ] && exit 1; exit 99')
    containers = JobContainers(ContainerSpec(runtime="podman", image="x/y:1"), "b", node, {})
    with pytest.raises(ContainerUnavailable, match=f"podman image x/y:1 is not on {HOST}"):
        containers.prepare({"PATH": str(fake)})


def test_a_podman_that_cannot_check_says_what_it_said(node):
    fake = node / "bin"
    fake_program(fake, "podman", "echo 'cannot connect' >&2; exit 125")
    containers = JobContainers(ContainerSpec(runtime="podman", image="x/y:1"), "b", node, {})
    with pytest.raises(ContainerUnavailable, match="cannot check image x/y:1.*cannot connect"):
        containers.prepare({"PATH": str(fake)})


def test_a_podman_image_that_is_there_passes_and_the_pidfile_dir_is_made(node):
    fake = node / "bin"
    fake_program(fake, "podman", '[ "$1 $2 $3" = "image exists x/y:1" ] && exit 0; exit 99')
    containers = JobContainers(ContainerSpec(runtime="podman", image="x/y:1"), "b", node, {})
    containers.prepare({"PATH": str(fake)})
    pidfile = containers.pidfile("a")
    assert pidfile == str(node / "tmp" / "jobforge-containers-4242-b" / "a.conmon.pid")
    assert Path(pidfile).parent.is_dir()
    assert f"--conmon-pidfile={pidfile}" in containers.argv("a", ["true"])
    containers.close()
    assert not Path(pidfile).parent.exists()


def test_an_apptainer_image_path_that_is_missing_is_unavailable(node):
    fake = node / "bin"
    fake_program(fake, "apptainer", "exit 0")
    missing = str(node / "nope.sif")
    containers = JobContainers(ContainerSpec(runtime="apptainer", image=missing), "b", node, {})
    with pytest.raises(ContainerUnavailable, match=f"apptainer image {missing} is not on {HOST}"):
        containers.prepare({"PATH": str(fake)})
    assert containers.pidfile("a") is None


def test_an_apptainer_uri_is_not_looked_for_on_disk(node):
    fake = node / "bin"
    fake_program(fake, "apptainer", "exit 0")
    spec = ContainerSpec(runtime="apptainer", image="docker://x/y:1")
    JobContainers(spec, "b", node, {}).prepare({"PATH": str(fake)})


def test_charliecloud_mount_points_are_made_in_the_image_and_user_is_filled_in(node):
    fake = node / "bin"
    fake_program(fake, "ch-run", "exit 0")
    image = node / "image"
    image.mkdir()
    out = node / "out"
    spec = ContainerSpec(runtime="charliecloud", image=str(image), bind=("/data:/mnt/data",))
    env = {"PATH": str(fake)}
    JobContainers(spec, "b", out, env).prepare(env)
    for point in (out, node / "proj", Path("/mnt/data")):
        assert (image / str(point).lstrip("/")).is_dir(), point
    assert env["USER"] == pwd.getpwuid(os.getuid()).pw_name


def test_charliecloud_keeps_a_user_that_is_set(node):
    fake = node / "bin"
    fake_program(fake, "ch-run", "exit 0")
    image = node / "image"
    image.mkdir()
    env = {"PATH": str(fake), "USER": "someone"}
    JobContainers(ContainerSpec(runtime="charliecloud", image=str(image)), "b", node, env).prepare(
        env
    )
    assert env["USER"] == "someone"


def test_a_missing_charliecloud_image_dir_is_unavailable(node):
    fake = node / "bin"
    fake_program(fake, "ch-run", "exit 0")
    image = str(node / "no-image")
    containers = JobContainers(ContainerSpec(runtime="charliecloud", image=image), "b", node, {})
    with pytest.raises(ContainerUnavailable, match=f"charliecloud image {image} is not on"):
        containers.prepare({"PATH": str(fake)})


def test_podman_cleanup_removes_the_jobs_container_by_name(node, monkeypatch):
    fake = node / "bin"
    log = node / "podman.log"
    fake_program(fake, "podman", f'echo "$*" >> {log}')
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    containers = JobContainers(ContainerSpec(runtime="podman", image="x/y:1"), "b", node, {})
    assert containers.cleanup("a") is None
    assert log.read_text() == "rm --force --ignore --time=0 jf-4242-b-a\n"


def test_a_failed_podman_cleanup_is_said_not_raised(node, monkeypatch):
    fake = node / "bin"
    fake_program(fake, "podman", "echo 'no such thing' >&2; exit 2")
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    containers = JobContainers(ContainerSpec(runtime="podman", image="x/y:1"), "b", node, {})
    problem = containers.cleanup("a")
    assert problem is not None
    assert "podman rm" in problem and "exit code 2" in problem and "no such thing" in problem


def test_apptainer_and_charliecloud_need_no_cleanup(node, monkeypatch):
    monkeypatch.setenv("PATH", str(node / "nothing-here"))  # nothing could be run anyway
    for spec in (
        ContainerSpec(runtime="apptainer", image="/i.sif"),
        ContainerSpec(runtime="charliecloud", image="/images/sim"),
    ):
        assert JobContainers(spec, "b", node, {}).cleanup("a") is None


# --- runner ---------------------------------------------------------------------------------
def records_by_name(out: Path, batch: str = "b") -> dict:
    return {r.name: r for r in read_records(results_file(out, batch))}


def test_a_runtime_missing_on_the_node_cancels_every_job_with_the_reason(node, monkeypatch):
    empty = node / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    spec = BatchSpec(
        batch="b",
        jobs=(JobSpec("a", "true"), JobSpec("c", "true", blocked_by=("a",))),
        container=ContainerSpec(runtime="apptainer", image="/i.sif"),
    )
    out = node / "out"
    assert run_batch(spec, out, 2) == 1
    records = list(read_records(results_file(out, "b")))
    reason = f"apptainer: apptainer is not installed on {HOST} (not on PATH)"
    assert sorted((r.name, r.status, r.reason) for r in records) == [
        ("a", "canceled", reason),
        ("c", "canceled", reason),
    ]
    failed = [e for e in read_events(out) if e.type == "node_setup_failed"]
    assert [(e.batch, e.message) for e in failed] == [("b", reason)]
    assert not [e for e in read_events(out) if e.type == "job_failed"]


# Drops ch-run's options, image and `--`, then runs the job's argv, as ch-run would inside.
FAKE_CH_RUN = (
    'printf \'%s\\n\' "$@" > "$JOBFORGE_OUTPUT_DIR/ch-run-$JOBFORGE_JOB_NAME.argv"\n'
    'while [ "$1" != "--" ]; do shift; done; shift; exec "$@"'
)


def test_charliecloud_jobs_run_through_ch_run_with_exit_codes_and_output_files(node, monkeypatch):
    fake = node / "bin"
    fake_program(fake, "ch-run", FAKE_CH_RUN)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    image = node / "image"
    image.mkdir()
    spec = BatchSpec(
        batch="b",
        jobs=(JobSpec("ok", "echo hi; echo oops >&2"), JobSpec("fails", "exit 7")),
        container=ContainerSpec(runtime="charliecloud", image=str(image), env={"K": "v w"}),
    )
    out = node / "out"
    assert run_batch(spec, out, 2) == 1
    got = records_by_name(out)
    assert (got["ok"].status, got["ok"].return_code) == ("finished", 0)
    assert (got["fails"].status, got["fails"].return_code) == ("finished", 7)
    assert (out / "job-output" / "ok.out").read_text() == "hi\n"
    assert (out / "job-output" / "ok.err").read_text() == "oops\n"
    assert (out / "job-output" / "fails.out").read_text() == ""
    argv = (out / "ch-run-ok.argv").read_text().splitlines()
    resolved_out = str(out.resolve())
    assert argv == [
        "--bind",
        resolved_out,
        "--bind",
        str(node / "proj"),
        f"--cd={node / 'proj'}",
        "--env-no-expand",
        "--set-env=K=v w",
        str(image),
        "--",
        "bash",
        "-c",
        "echo hi; echo oops >&2",
    ]
    assert (image / resolved_out.lstrip("/")).is_dir()


def fake_podman(log: Path, image: str) -> str:
    """`image exists`: yes; `rm`: logged; `run`: writes the conmon pid file, then runs what
    follows the image."""
    return f"""case "$1" in
image) exit 0 ;;
rm) echo "$*" >> {log}; exit 0 ;;
run)
  for a in "$@"; do
    case "$a" in --conmon-pidfile=*) echo $$ > "${{a#--conmon-pidfile=}}" ;; esac
  done
  while [ "$1" != "{image}" ]; do shift; done; shift; exec "$@" ;;
esac
exit 99"""


def test_a_podman_job_killed_by_a_signal_gets_its_container_removed(node, monkeypatch):
    fake = node / "bin"
    log = node / "podman.log"
    fake_program(fake, "podman", fake_podman(log, "localhost/sim:1"))
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    spec = BatchSpec(
        batch="b",
        jobs=(JobSpec("ok", 'echo "$JOBFORGE_JOB_NAME"'), JobSpec("killed", "kill -9 $$")),
        container=ContainerSpec(runtime="podman", image="localhost/sim:1"),
    )
    out = node / "out"
    assert run_batch(spec, out, 1, monitor_interval_s=0.2) == 1
    got = records_by_name(out)
    assert (got["ok"].status, got["ok"].return_code) == ("finished", 0)
    assert (out / "job-output" / "ok.out").read_text() == "ok\n"
    assert got["killed"].return_code == 128 + 9 and got["killed"].reason == "killed by signal 9"
    assert log.read_text() == "rm --force --ignore --time=0 jf-4242-b-killed\n"
    assert not (node / "tmp" / "jobforge-containers-4242-b").exists(), "scratch removed"


# --- monitor --------------------------------------------------------------------------------
def test_processes_under_the_pid_in_a_jobs_pidfile_count_to_that_job(tmp_path):
    """podman's conmon is no child of the job's client: the pid file names it. Here the job
    is a `sleep` and the busy process, in a session of its own, stands in for conmon."""
    job = subprocess.Popen(["sleep", "5"], start_new_session=True)
    busy = subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True)
    try:
        mon = monitor.ResourceMonitor(tmp_path, "b", 0.2, host="h")
        pidfile = tmp_path / "a.conmon.pid"
        mon.job_started(job.pid, "a", pidfile=str(pidfile))
        mon.sample()  # no pid file yet: the busy process is an outsider, and remembered so
        pidfile.write_text(f"{busy.pid}\n")
        for _ in range(2):
            time.sleep(0.4)
            mon.sample()
        mon.job_ended(job.pid)
        mon.sample()
        mon.close()
    finally:
        for proc in (job, busy):
            proc.kill()
            proc.wait()
    samples = [s for s in read_monitor(tmp_path) if s["kind"] == "job"]
    assert [s["job"] for s in samples] == ["a", "a", "a"], "none after the job ended"
    before, *adopted = samples
    assert before["nprocs"] == 1
    assert [s["nprocs"] for s in adopted] == [2, 2]
    assert max(s["cpu_pct"] for s in adopted) > 20
