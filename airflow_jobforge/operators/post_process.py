"""JobPostProcessOperator: the config's job_post_process_config, called once per job.

The class is imported from `module`, built with the config's `data` dict, and its
`run(job_name, result, output_dir)` is called with the job's result record (a dict). It runs
on the Airflow worker, so `output_dir` must be reachable there (shared file system) when the
jobs ran elsewhere. Jobs that did not succeed are skipped, as in JADE.
"""

from __future__ import annotations

import importlib
from typing import Any

from airflow.sdk import BaseOperator

from airflow_jobforge.airflow_compat import AirflowException, AirflowSkipException
from airflow_jobforge.operators.base import ClusterMixin, run_output_dir


class JobPostProcessOperator(ClusterMixin, BaseOperator):
    """Calls `<module>.<class_name>(data).run(job, record, output_dir)` for one job that
    succeeded; skipped when the job did not succeed or is not selected in the run.

    :param job: the job's name
    :param module: importable module holding the post-process class
    :param class_name: the class (`class` in the config's `job_post_process_config`)
    :param data: handed to the class's constructor
    :param output_dir: base output directory; the run's own directory is passed to `run`
    :param cluster: `ClusterSettings` as a dict (where the result records are read)
    """

    ui_color = "#e6d6f0"

    def __init__(
        self,
        *,
        job: str,
        module: str,
        class_name: str,
        data: dict[str, Any],
        output_dir: str,
        cluster: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.module = module
        self.class_name = class_name
        self.data = data
        self.output_dir = output_dir
        self.cluster = cluster

    def execute(self, context: Any) -> Any:
        if not self.selection(context, self.output_dir)([self.job]):
            raise AirflowSkipException("not selected in this run")
        output_dir = run_output_dir(self.output_dir, context)
        client = self.hook.get_client()
        try:
            record = client.read_results(output_dir).get(self.job)
        finally:
            client.close()
        if record is None or not record.succeeded:
            raise AirflowSkipException(f"job {self.job} did not succeed: no post-process")
        try:
            cls = getattr(importlib.import_module(self.module), self.class_name)
        except (ImportError, AttributeError) as exc:
            raise AirflowException(
                f"cannot import post-process {self.module}.{self.class_name}: {exc}"
            ) from None
        return cls(self.data).run(self.job, record.__dict__, output_dir)
