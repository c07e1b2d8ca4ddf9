"""Charliecloud: `ch-run IMAGE_DIR -- COMMAND`. An unprivileged process of the job's own
tree (user namespaces, no daemon): the runner's signals, wait4 figures and the resource
monitor see it as any job. The host environment passes through; `env` is set with
`--set-env` (not expanded); mounts need existing mount points in the image (the runner makes
the missing ones in an image directory it may write)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_jobforge.rundir.batches import ContainerSpec

Mount = tuple[str, str, "str | None"]


def run_argv(spec: ContainerSpec, mounts: list[Mount], workdir: str, argv: list[str]) -> list[str]:
    out = ["ch-run"]
    for src, dst, _options in mounts:  # ch-run 0.31 mounts read-write only
        out += ["--bind", src if dst == src else f"{src}:{dst}"]
    out.append(f"--cd={workdir}")
    if spec.env:
        out.append("--env-no-expand")
    for key, value in spec.env.items():
        out.append(f"--set-env={key}={value}")
    return [*out, *spec.args, spec.image, "--", *argv]
