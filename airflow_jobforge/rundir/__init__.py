"""What a run leaves on disk and how it is read: result records (`records`), the event log
(`events`), the batch files the node runner reads (`batches`), the resource monitor's
samples (`samples`), the wait's completion of missing records (`completion`), a batch's
conclusion handed between tasks (`conclusion`) and the run's manifest (`manifest`). Below
`slurm/` and `node/`, which write it, and `results/`, which acts on it.

The record API is re-exported here: it is what most of the package imports.
"""

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
    "RESULTS_DIR",
    "ResultRecord",
    "ResultsWriter",
    "Status",
    "Summary",
    "collect_results",
    "job_state",
    "latest_records",
    "parse_record_lines",
    "read_records",
    "results_file",
    "results_table",
    "summarize",
    "tail_file",
    "unwritable_reason",
]
