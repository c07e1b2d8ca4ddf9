"""How a config's tasks are made and run, as one object: `DagOptions`.

The factory's entry points (`build_dag`, `load_dags`, `JobForgeTaskGroup`, `jobforge run`)
take it whole instead of threading a dozen keyword arguments through every layer, as
astronomer-cosmos does with its `RenderConfig`/`ExecutionConfig`. The keyword arguments DAG
files already pass (`build_dag(config, "sims", backend="slurm", output_dir=...)`) still work:
`DagOptions.take` folds them in. Pure data, no Airflow import.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from airflow_jobforge.errors import JobForgeError

Backend = Literal["local", "slurm"]
DAG_ID_PREFIX = "jobforge_"


@dataclass(frozen=True)
class DagOptions:
    """Where a config's batches run and how its tasks wait for them.

    :param backend: `slurm` (sbatch) or `local` (batches run as processes on the worker)
    :param slurm_conn_id: Airflow connection of type `slurm` whose extras give defaults
    :param ssh_conn_id: Airflow SSH connection to the login node; None: the SLURM CLI on the
        worker
    :param output_dir: base output directory, a sub-directory per DAG run; with SSH an
        absolute path on the cluster (default `$AIRFLOW_HOME/jobforge-output/<dag_id>`)
    :param python: interpreter on the compute nodes that imports airflow_jobforge
    :param pythonpath: PYTHONPATH on the compute nodes
    :param workdir: working directory of the batches on the nodes (`sbatch --chdir`)
    :param poll_interval: seconds between status queries of the wait tasks
    :param deferrable: wait in the triggerer (default) instead of holding a worker slot
    :param node_failure_retries: resubmissions of a batch after NODE_FAIL, BOOT_FAIL or
        PREEMPTED
    :param submit_rate_limit: at most this many sbatch calls per second on the cluster, for
        every DAG on this Airflow host (`slurm.limits`); None: the `slurm` connection's extra
        `submit_rate_limit`, else no limit
    :param job_tasks: one `job_<name>` task per job; None: only for configs of up to 100 jobs
        (and one-job batches)
    """

    backend: Backend = "local"
    slurm_conn_id: str | None = None
    ssh_conn_id: str | None = None
    output_dir: str | None = None
    python: str | None = None
    pythonpath: str | None = None
    workdir: str | None = None
    poll_interval: float = 2.0
    deferrable: bool = True
    node_failure_retries: int = 2
    submit_rate_limit: float | None = None
    job_tasks: bool | None = None

    @classmethod
    def take(cls, options: DagOptions | None, kwargs: dict[str, Any]) -> DagOptions:
        """`options` (or the defaults) updated with the keyword arguments named like its
        fields, which are removed from `kwargs`: what stays there is for `DAG(...)` or the
        TaskGroup."""
        update = {f.name: kwargs.pop(f.name) for f in fields(cls) if f.name in kwargs}
        return replace(options or cls(), **update)

    def for_dag(self, dag_id: str, file: str | None = None) -> DagOptions:
        """These options with the default output dir of `dag_id`, checked."""
        options = self if self.output_dir else replace(self, output_dir=default_output_dir(dag_id))
        options.check(file)
        return options

    def check(self, file: str | None = None) -> None:
        """What cannot work, said at parse time (naming the config file)."""
        if self.output_dir is None:
            raise JobForgeError("output_dir is required to embed a config's tasks", file=file)
        if self.backend == "slurm" and self.ssh_conn_id and not os.path.isabs(self.output_dir):
            raise JobForgeError("output_dir must be an absolute path on the cluster", file=file)

    def to_dict(self) -> dict[str, Any]:
        """The options that differ from the defaults (what `jobforge run` writes into the DAG
        file it has Airflow parse)."""
        default = DagOptions()
        return {k: v for k, v in asdict(self).items() if v != getattr(default, k)}


def dag_id_for(path: str | os.PathLike[str], prefix: str = DAG_ID_PREFIX) -> str:
    """The DAG id of a config file: the prefix and the file's stem, as an Airflow id."""
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", Path(path).stem)


def default_output_dir(dag_id: str) -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.join(os.path.abspath(home), "jobforge-output", dag_id)
