"""Apptainer and Singularity (same command line): `exec` with `--bind`, `--pwd`, `--env`,
`--nv`. The host environment is passed by default, as sites expect; `--cleanenv` in `args`
turns that off. Rendered and unit-tested against Apptainer's documented syntax: Debian has no
Apptainer package, so CI cannot run it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_jobforge.rundir.batches import ContainerSpec

Mount = tuple[str, str, "str | None"]


def bind_value(src: str, dst: str, options: str | None) -> str:
    value = src if dst == src and not options else f"{src}:{dst}"
    return f"{value}:{options}" if options else value


def exec_argv(spec: ContainerSpec, mounts: list[Mount], workdir: str, argv: list[str]) -> list[str]:
    out = [spec.runtime, "exec"]
    for src, dst, options in mounts:
        out += ["--bind", bind_value(src, dst, options)]
    out += ["--pwd", workdir]
    for key, value in spec.env.items():
        out += ["--env", f"{key}={value}"]
    if spec.gpus:
        out.append("--nv")
    return [*out, *spec.args, spec.image, *argv]


def runner_prefix(
    runtime: str, image: str, bind: tuple[str, ...], args: tuple[str, ...]
) -> list[str]:
    out = [runtime, "exec"]
    for item in bind:
        out += ["--bind", item]
    return [*out, *args, image]
