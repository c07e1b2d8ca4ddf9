"""What a run leaves behind and how it is read: result records (`records`), the run's event
log (`events`), and (in later modules) summaries, efficiency and reports.

The record API is re-exported here: it is what most of the package imports.
"""

from airflow_jobforge.results.records import (
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
