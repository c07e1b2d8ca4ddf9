"""A pipeline as a DAG, and a DAG scheduled on one of its stages.

`jobforge_pipeline_sweep` runs examples/pipelines/sweep.json: the `simulate` stage (a
config file), then `aggregate`, whose config a generator writes from simulate's outputs
when the stage starts. Each stage that succeeds emits its Asset (`stage_asset`), the
stage's run dir in the event's extra.

`jobforge_pipeline_sweep_downstream` runs each time `aggregate` succeeds: a DAG of your own
(another team's, another pipeline) scheduled on a stage, reading where its outputs are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from airflow_jobforge.config import load_pipeline
from airflow_jobforge.dag import build_pipeline_dag, stage_asset

PIPELINE = os.environ.get(
    "JOBFORGE_EXAMPLE_PIPELINE",
    str(Path(__file__).resolve().parent.parent / "examples/pipelines/sweep.json"),
)
PIPELINE_DAG_ID = "jobforge_pipeline_sweep"
AGGREGATED = stage_asset(PIPELINE_DAG_ID, "aggregate")

# The static stages' configs are validated as they are rendered (from the render cache).
pipeline = build_pipeline_dag(
    load_pipeline(PIPELINE, check_configs=False)[0],
    PIPELINE_DAG_ID,
    file=PIPELINE,
    backend=os.environ.get("JOBFORGE_EXAMPLE_BACKEND", "local"),
    tags=["jobforge", "example", "pipeline"],
)

with DAG(
    "jobforge_pipeline_sweep_downstream",
    schedule=[AGGREGATED],
    catchup=False,
    tags=["jobforge", "example", "pipeline"],
    doc_md="Runs when stage `aggregate` of `jobforge_pipeline_sweep` succeeded.",
) as downstream:

    @task
    def use_stage_outputs(triggering_asset_events: Any = None) -> list[str]:
        """The event's extra: run_dir (the stage's), pipeline_run_dir, stage, dag_id, run_id."""
        run_dirs = []
        # Empty when the DAG was triggered by hand rather than by the stage's event.
        for event in (triggering_asset_events or {}).get(AGGREGATED, ()):
            print(f"{AGGREGATED.uri}: {event.extra}")
            run_dirs.append(event.extra["run_dir"])
        for run_dir in run_dirs:
            summary = Path(run_dir, "summary.txt")
            if summary.is_file():
                print(f"{summary}: {summary.read_text().strip()}")
        return run_dirs

    use_stage_outputs()
