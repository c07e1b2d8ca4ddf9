"""The command lines that run a job's command in an image, per runtime (`apptainer`,
`podman`, `charliecloud`). Pure: argv lists only, nothing is started here; the node runner
starts them (`node.runner`) and the SLURM script renders the runner-scope prefix
(`slurm.script`).

What runs inside is each job's command, not the node runner: the runner stays on the host,
where it owns the job's process (exit code, signals, stdout/stderr files, the resource
monitor) exactly as without a container. Every runtime gets the run's output dir and the
job's working dir mounted at their own paths, so `$JOBFORGE_OUTPUT_DIR` and relative paths
mean inside what they mean outside.
"""

from airflow_jobforge.containers.jobs import (
    ContainerJob,
    cleanup_argv,
    job_container_argv,
    mount_points,
    runner_prefix,
)

__all__ = ["ContainerJob", "cleanup_argv", "job_container_argv", "mount_points", "runner_prefix"]
