"""What a run leaves on disk and how it is read: result records (`records`), the event log
(`events`), the batch files the node runner reads (`batches`), the resource monitor's
samples (`samples`), the wait's completion of missing records (`completion`), a batch's
conclusion handed between tasks (`conclusion`), the run's manifest (`manifest`) and a
pipeline run's dir of stage run dirs (`pipeline`). Below `slurm/` and `node/`, which write
it, and `results/`, which acts on it.

The record API is re-exported here: it is what most of the package imports; so is what the
DAG writes of a pipeline run.
"""

from airflow_jobforge.rundir.pipeline import (
    PIPELINE_MANIFEST,
    STAGE_STATUS,
    PipelineRunManifest,
    StageEntry,
    StageStatus,
    is_pipeline_run_dir,
    pipeline_manifest_path,
    read_pipeline_manifest,
    read_stage_status,
    stage_dir,
    stage_state,
    stage_status_path,
    write_pipeline_manifest,
    write_stage_status,
)
from airflow_jobforge.rundir.records import (
    EXIT_OUTPUT_UNWRITABLE,
    NOT_WRITABLE,
    RESULTS_DIR,
    ResultRecord,
    ResultsWriter,
    Status,
    Summary,
    collect_results,
    job_state,
    latest_records,
    parse_record_lines,
    read_records,
    results_file,
    results_table,
    summarize,
    tail_file,
    unwritable_reason,
)

__all__ = [
    "EXIT_OUTPUT_UNWRITABLE",
    "NOT_WRITABLE",
    "PIPELINE_MANIFEST",
    "RESULTS_DIR",
    "STAGE_STATUS",
    "PipelineRunManifest",
    "ResultRecord",
    "ResultsWriter",
    "StageEntry",
    "StageStatus",
    "Status",
    "Summary",
    "collect_results",
    "is_pipeline_run_dir",
    "job_state",
    "latest_records",
    "parse_record_lines",
    "pipeline_manifest_path",
    "read_pipeline_manifest",
    "read_records",
    "read_stage_status",
    "results_file",
    "results_table",
    "stage_dir",
    "stage_state",
    "stage_status_path",
    "summarize",
    "tail_file",
    "unwritable_reason",
    "write_pipeline_manifest",
    "write_stage_status",
]
