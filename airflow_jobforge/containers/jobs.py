"""One job in a container: what the runner knows of it (`ContainerJob`), and the argv per
runtime. The job's own argv (`bash -c COMMAND`, or an extension's) goes in unchanged, as
argv elements: no shell sees any value of the config here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from airflow_jobforge.containers import apptainer, charliecloud, podman
from airflow_jobforge.rundir.batches import ContainerSpec


@dataclass(frozen=True)
class ContainerJob:
    """The job's side of the command line."""

    job: str
    batch: str
    allocation: str
    """The SLURM job id (or the runner's pid without SLURM): container names stay unique
    when batches of several runs share a node."""
    cwd: str
    output_dir: str
    env_names: tuple[str, ...] = ()
    """Variables the runner sets for every job (JOBFORGE_*, SLURM_*, the batch's env): handed
    in by name where the runtime does not pass the environment (podman)."""
    rootless: bool = False
    pidfile: str | None = None
    """podman: where conmon writes its pid, for the resource monitor."""


def default_mounts(spec: ContainerSpec, ctx: ContainerJob) -> list[tuple[str, str, str | None]]:
    """(src, dst, options): the output dir and the working dir at their own paths, then the
    configured binds; a path already mounted (or under one) is not mounted twice."""
    mounts: list[tuple[str, str, str | None]] = []
    for path in (ctx.output_dir, ctx.cwd):
        if not any(_under(path, m[1]) for m in mounts):
            mounts.append((path, path, None))
    for item in spec.bind:
        parts = item.split(":")
        src = parts[0]
        dst = parts[1] if len(parts) > 1 and parts[1] else src
        mounts.append((src, dst, parts[2] if len(parts) > 2 else None))
    return mounts


def _under(path: str, root: str) -> bool:
    p, r = PurePosixPath(path), PurePosixPath(root)
    return p == r or r in p.parents


def job_container_argv(spec: ContainerSpec, ctx: ContainerJob, argv: list[str]) -> list[str]:
    """The command that runs `argv` in the image."""
    mounts = default_mounts(spec, ctx)
    workdir = spec.workdir or ctx.cwd
    if spec.runtime in ("apptainer", "singularity"):
        return apptainer.exec_argv(spec, mounts, workdir, argv)
    if spec.runtime == "podman":
        return podman.run_argv(spec, ctx, mounts, workdir, argv)
    if spec.runtime == "charliecloud":
        return charliecloud.run_argv(spec, mounts, workdir, argv)
    raise ValueError(f"unknown container runtime {spec.runtime!r}")


def mount_points(spec: ContainerSpec, ctx: ContainerJob) -> list[str]:
    """Directories the image must have for the mounts (charliecloud mounts only onto existing
    ones; the runner creates what is missing in an image directory it may write)."""
    if spec.runtime != "charliecloud":
        return []
    return [dst for _, dst, _ in default_mounts(spec, ctx)]


def cleanup_argv(spec: ContainerSpec, ctx: ContainerJob) -> list[str] | None:
    """What removes a job's container after its client was killed; None where the container
    is the job's own process tree (apptainer, charliecloud), which the kill ended."""
    if spec.runtime == "podman":
        return podman.remove_argv(podman.container_name(ctx))
    return None


def runner_prefix(
    runtime: str, image: str, bind: tuple[str, ...], args: tuple[str, ...]
) -> list[str]:
    """`scope: runner`: the words before the node runner's command (apptainer/singularity)."""
    return apptainer.runner_prefix(runtime, image, bind, args)
