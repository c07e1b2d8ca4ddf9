"""The node side of a batch whose jobs run in an image: checks before the first job (the
runtime is there, the image is there, charliecloud's mount points exist), each job's argv,
and removing a podman container whose client the runner killed.

A check that fails ends the batch before any job, each recorded `canceled` with the reason
(`ContainerUnavailable`), as a failed node setup does: a job started into a missing image
would only fail with a less clear message, once per job.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

from airflow_jobforge.containers import (
    ContainerJob,
    cleanup_argv,
    job_container_argv,
    mount_points,
)
from airflow_jobforge.rundir.batches import ContainerSpec

CHECK_TIMEOUT_S = 120.0
CLEANUP_TIMEOUT_S = 30.0
_PROGRAM = {"apptainer": "apptainer", "singularity": "singularity", "podman": "podman"}
_PROGRAM["charliecloud"] = "ch-run"
# The runner's own variables, handed to podman by name with the job's environment.
RUNNER_VARIABLES = ("JOBFORGE_JOB_NAME", "JOBFORGE_OUTPUT_DIR", "JOBFORGE_BATCH")


class ContainerUnavailable(Exception):
    """The batch's jobs cannot run in their image on this node; the message says why."""


class JobContainers:
    def __init__(
        self,
        spec: ContainerSpec,
        batch: str,
        output_dir: Path,
        env: dict[str, str],
        batch_env: tuple[str, ...] = (),
    ) -> None:
        self.spec = spec
        self.batch = batch
        self.output_dir = str(output_dir)
        self.allocation = os.environ.get("SLURM_JOB_ID") or str(os.getpid())
        self.cwd = os.getcwd()
        self.host = socket.gethostname()
        self.rootless = os.geteuid() != 0
        self.env_names = tuple(
            sorted(
                {
                    *RUNNER_VARIABLES,
                    *batch_env,
                    *(k for k in env if k.startswith(("JOBFORGE_", "SLURM_"))),
                }
            )
        )
        self.scratch = Path(os.environ.get("TMPDIR") or "/tmp") / (
            f"jobforge-containers-{self.allocation}-{batch}"
        )

    def context(self, job: str) -> ContainerJob:
        pidfile = None
        if self.spec.runtime == "podman":
            pidfile = str(self.scratch / f"{job}.conmon.pid")
        return ContainerJob(
            job=job,
            batch=self.batch,
            allocation=self.allocation,
            cwd=self.cwd,
            output_dir=self.output_dir,
            env_names=self.env_names,
            rootless=self.rootless,
            pidfile=pidfile,
        )

    def argv(self, job: str, argv: list[str]) -> list[str]:
        return job_container_argv(self.spec, self.context(job), argv)

    def pidfile(self, job: str) -> str | None:
        return self.context(job).pidfile

    # --- before the first job ---------------------------------------------------------------
    def prepare(self, env: dict[str, str]) -> None:
        """Check the runtime and the image; ContainerUnavailable says what is wrong."""
        spec = self.spec
        program = _PROGRAM[spec.runtime]
        if shutil.which(program, path=env.get("PATH")) is None:
            raise ContainerUnavailable(
                f"{spec.runtime}: {program} is not installed on {self.host} (not on PATH)"
            )
        if spec.runtime == "podman":
            self._check_podman_image(env)
            self.scratch.mkdir(parents=True, exist_ok=True)
        elif spec.image.startswith("/") and not Path(spec.image).exists():
            raise ContainerUnavailable(f"{spec.runtime} image {spec.image} is not on {self.host}")
        if spec.runtime == "charliecloud":
            self._make_mount_points()
            if not env.get("USER"):  # ch-run refuses to start without it
                env["USER"] = pwd.getpwuid(os.getuid()).pw_name

    def _check_podman_image(self, env: dict[str, str]) -> None:
        try:
            found = subprocess.run(
                ["podman", "image", "exists", self.spec.image],
                capture_output=True,
                text=True,
                env=env,
                timeout=CHECK_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ContainerUnavailable(f"podman image check failed on {self.host}: {exc}") from exc
        if found.returncode == 1:
            raise ContainerUnavailable(
                f"podman image {self.spec.image} is not on {self.host} (podman images lists it "
                "once it is pulled, loaded or imported there)"
            )
        if found.returncode != 0:
            said = (found.stderr or found.stdout).strip().splitlines()[-1:] or [""]
            raise ContainerUnavailable(
                f"podman cannot check image {self.spec.image} on {self.host}: {said[0]}"
            )

    def _make_mount_points(self) -> None:
        image = Path(self.spec.image)
        for point in mount_points(self.spec, self.context("-")):
            target = image / point.lstrip("/")
            if target.is_dir():
                continue
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ContainerUnavailable(
                    f"charliecloud image {image} has no mount point {point} and it cannot be "
                    f"made ({exc.strerror}); create it in the image"
                ) from exc

    # --- after a kill -----------------------------------------------------------------------
    def cleanup(self, job: str) -> str | None:
        """Remove the job's container if the runtime left it running; what went wrong, if so."""
        argv = cleanup_argv(self.spec, self.context(job))
        if argv is None:
            return None
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=CLEANUP_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(argv)}: {exc}"
        if done.returncode != 0:
            return f"{' '.join(argv)}: exit code {done.returncode}: {done.stderr.strip()[-300:]}"
        return None

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
