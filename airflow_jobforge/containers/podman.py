"""Podman: `podman run --rm --init` per job, attached, so the client's exit code is the
job's and its stdout/stderr are the job's files.

The container's processes are not the client's children: conmon (podman's monitor process)
detaches from it, outside SLURM's process tracking. Hence: a name per job (so the runner can
remove it, `podman rm -f`, when it kills the client), labels naming the batch and the SLURM
job (so a site's epilog can remove what a hard-killed runner left: `podman rm -f --filter
label=jobforge.hpc_job_id=$SLURM_JOB_ID`), conmon's pid file (so the resource monitor counts
the container's processes to the job), `--init` (the job's shell is not PID 1, which ignores
SIGTERM) and the client's signal proxy (default) forwarding scancel's SIGTERM in.

Environment: podman passes none of the host's; the runner's per-job variables (JOBFORGE_*,
SLURM_*, the batch's env) and `pass_env` go in by name (`--env NAME`: the client's value),
`env` by value. GPUs: the CDI device `nvidia.com/gpu=all` (NVIDIA Container Toolkit's
`nvidia-ctk cdi generate` on the node). Network: the host's (`--network=host`), as an HPC
job expects (MPI, Spark, license servers).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_jobforge.containers.jobs import ContainerJob
    from airflow_jobforge.rundir.batches import ContainerSpec

Mount = tuple[str, str, "str | None"]
LABEL_BATCH = "jobforge.batch"
LABEL_JOB = "jobforge.job"
LABEL_HPC_JOB = "jobforge.hpc_job_id"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def container_name(ctx: ContainerJob) -> str:
    """jf-<allocation>-<batch>-<job>: unique on a node while the allocation lives."""
    name = f"jf-{ctx.allocation}-{ctx.batch}-{ctx.job}"
    return _UNSAFE.sub("_", name)[:250]


def volume(src: str, dst: str, options: str | None) -> str:
    return f"{src}:{dst}:{options}" if options else f"{src}:{dst}"


def run_argv(
    spec: ContainerSpec, ctx: ContainerJob, mounts: list[Mount], workdir: str, argv: list[str]
) -> list[str]:
    out = [
        "podman",
        "run",
        "--rm",
        "--init",
        f"--name={container_name(ctx)}",
        f"--label={LABEL_BATCH}={ctx.batch}",
        f"--label={LABEL_JOB}={ctx.job}",
        f"--label={LABEL_HPC_JOB}={ctx.allocation}",
        "--network=host",
        # Output goes to the attached client only (the job's files), not to podman's store too.
        "--log-driver=none",
    ]
    if ctx.pidfile:
        out.append(f"--conmon-pidfile={ctx.pidfile}")
    if ctx.rootless:  # files in the output dir belong to the user, not to a subordinate uid
        out.append("--userns=keep-id")
    for src, dst, options in mounts:
        out += ["--volume", volume(src, dst, options)]
    out.append(f"--workdir={workdir}")
    for name in dict.fromkeys((*ctx.env_names, *spec.pass_env)):
        out += ["--env", name]
    for key, value in spec.env.items():
        out += ["--env", f"{key}={value}"]
    if spec.gpus:
        out += ["--device", "nvidia.com/gpu=all"]
    return [*out, *spec.args, spec.image, *argv]


def remove_argv(name: str) -> list[str]:
    return ["podman", "rm", "--force", "--ignore", "--time=0", name]
