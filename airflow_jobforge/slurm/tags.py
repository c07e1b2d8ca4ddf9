"""How a run's SLURM jobs are named: the run key and the submit tags that make a batch's job
findable again, so a retry or a restart adopts what was submitted instead of submitting twice.
"""

from __future__ import annotations

import hashlib


def run_key(dag_id: str, run_id: str, stage: str | None = None) -> str:
    """A short, tag-safe key unique per DAG run (run ids hold ':' and '+'), and per stage of
    a pipeline run."""
    text = f"{dag_id}\0{run_id}" + (f"\0{stage}" if stage else "")
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def submit_tag(key: str, batch: str, try_number: int, kind: str = "t") -> str:
    """Unique per (DAG run, batch, attempt): a restart of the same attempt adopts its job."""
    return f"{key}.{batch}.{kind}{try_number}"


def rerun_names(batch: str, task_id: str, try_number: int) -> tuple[str, str]:
    """(batch file name, tag part) of the rerun a cleared result task submits: unique per
    (task, cleared attempt) and independent of which jobs it holds, so a retry of that
    attempt after an infrastructure error finds and adopts it instead of submitting twice."""
    digest = hashlib.sha1(task_id.encode()).hexdigest()[:8]
    return f"{batch}-rerun{try_number}-{digest}", f"{batch}.r{try_number}-{digest}"
