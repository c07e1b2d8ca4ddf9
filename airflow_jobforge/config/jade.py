"""Import a JADE (nrel-jade) configuration, format v0.2.0.

Every field whose meaning carries over is mapped; every field that does not, but was set to
something other than JADE's default, is reported as a note, so nothing is dropped silently.
"""

from __future__ import annotations

import re
from typing import Any

from airflow_jobforge.config.fields import check_job_name
from airflow_jobforge.config.models import DEFAULT_GROUP, JobConfiguration
from airflow_jobforge.config.validation import parse_configuration
from airflow_jobforge.errors import ConfigError, Problem

SLURM_FIELDS = (
    "account",
    "partition",
    "qos",
    "reservation",
    "walltime",
    "gres",
    "mem",
    "tmp",
    "nodes",
    "ntasks",
    "ntasks_per_node",
)
# submitter_params fields with no counterpart here, and JADE's defaults for them: a field at
# its default tells the user nothing, so only changed ones are reported.
UNMAPPED_SUBMITTER_DEFAULTS: dict[str, Any] = {
    "generate_reports": True,
    "poll_interval": 10.0,
    "resource_monitor_interval": 10,
    "resource_monitor_type": "aggregation",
    "resource_monitor_stats": None,
    "dry_run": False,
    "verbose": False,
    "distributed_submitter": True,
    "node_setup_script": None,
    "node_shutdown_script": None,
}
IDENTITY_KEYS = {
    "configuration_module",
    "configuration_class",
    "format_version",
    "class",
    "extension",
}
TOP_LEVEL_COPIED = (
    "setup_command",
    "teardown_command",
    "node_setup_command",
    "node_teardown_command",
    "user_data",
    "job_global_config",
    "job_post_process_config",
)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def import_jade(data: Any, *, file: str | None = None) -> tuple[JobConfiguration, list[str]]:
    """Return the converted configuration and notes on what did not carry over."""
    if not isinstance(data, dict) or "jobs" not in data:
        raise ConfigError([Problem("", "not a JADE configuration (no 'jobs' list)")], file=file)
    notes: list[str] = []
    version = data.get("format_version")
    if version not in (None, "v0.2.0"):
        notes.append(f"format_version {version!r}: only v0.2.0 is known; imported as such")
    out: dict[str, Any] = {k: data[k] for k in TOP_LEVEL_COPIED if data.get(k) is not None}
    for key, value in data.items():
        if key in IDENTITY_KEYS or key in TOP_LEVEL_COPIED or key in ("jobs", "submission_groups"):
            continue
        if value not in (None, {}, []):
            notes.append(f"top-level {key!r} = {value!r}: not carried over")

    names = _job_names(data["jobs"], notes)
    out["jobs"] = [_job(job, names, notes) for job in data["jobs"]]
    groups = [_group(g, notes) for g in data.get("submission_groups") or []]
    used = {job.get("submission_group") for job in out["jobs"]}
    if DEFAULT_GROUP in used and all(g["name"] != DEFAULT_GROUP for g in groups):
        groups.append({"name": DEFAULT_GROUP})
        if len(groups) > 1 or data.get("submission_groups"):
            notes.append(
                "group 'default' created with jobforge defaults: JADE takes its parameters "
                "from 'jade submit-jobs' options, which are not in the file"
            )
    out["submission_groups"] = groups
    return parse_configuration(out, file=file), notes


def _job_names(jobs: list[Any], notes: list[str]) -> dict[str, str]:
    """JADE name (or job_id when name is null) -> a name valid here; renames are noted."""
    names: dict[str, str] = {}
    for job in jobs:
        if not isinstance(job, dict):
            continue
        original = job.get("name")
        original = str(job.get("job_id")) if original is None else str(original)
        new = original
        try:
            check_job_name(new)
        except ValueError:
            new = _UNSAFE.sub("_", new).lstrip(".-")[:200] or "job"
            notes.append(f"job {original!r} renamed {new!r} (not usable as a task id/file name)")
        names[original] = new
    return names


def _job(job: Any, names: dict[str, str], notes: list[str]) -> Any:
    if not isinstance(job, dict):
        return job
    original = str(job["job_id"]) if job.get("name") is None else str(job["name"])
    out: dict[str, Any] = {"name": names.get(original, original), "command": job.get("command")}
    out["blocked_by"] = [names.get(str(b), str(b)) for b in job.get("blocked_by") or []]
    for key in (
        "cancel_on_blocking_job_failure",
        "estimated_run_minutes",
        "submission_group",
        "extension",
        "ext",
    ):
        if job.get(key) is not None:
            out[key] = job[key]
    if job.get("append_output_dir"):
        notes.append(
            f"job {out['name']!r}: append_output_dir is not carried over; jobs get the output "
            "directory in $JOBFORGE_OUTPUT_DIR instead"
        )
    for key in set(job) - {
        "name",
        "job_id",
        "command",
        "blocked_by",
        "append_output_dir",
        "cancel_on_blocking_job_failure",
        "estimated_run_minutes",
        "submission_group",
        "extension",
        "ext",
    }:
        if job[key] is not None:
            notes.append(f"job {out['name']!r}: field {key!r} is not carried over")
    return out


def _group(group: Any, notes: list[str]) -> Any:
    if not isinstance(group, dict):
        return group
    name = group.get("name")
    fields = submitter_params_fields(group.get("submitter_params") or {}, f"group {name!r}", notes)
    return {"name": name, **fields}


def submitter_params_fields(params: dict[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    """JADE `submitter_params` as submission group fields: `slurm`, `batching`, and
    `max_concurrent_batches` / `container` when set; what does not carry over is noted.

    Shared by config groups and pipeline stages, which carry the same JADE object.
    """
    hpc_config = params.get("hpc_config") or {}
    hpc_type = hpc_config.get("hpc_type", "slurm")
    hpc = hpc_config.get("hpc") or {}
    if hpc_type != "slurm":
        notes.append(f"{where}: hpc_type {hpc_type!r} becomes SLURM with default parameters")
        hpc = {}
    slurm = {k: hpc[k] for k in SLURM_FIELDS if hpc.get(k) is not None}
    for key in set(hpc) - set(SLURM_FIELDS):
        if hpc[key] is not None:
            notes.append(f"{where}: hpc field {key!r} = {hpc[key]!r} is not carried over")
    if hpc_config.get("job_prefix") not in (None, "job"):
        notes.append(f"{where}: job_prefix is not carried over (SLURM names come from the DAG)")

    batching: dict[str, Any] = {}
    for key in ("per_node_batch_size", "time_based_batching", "try_add_blocked_jobs"):
        if params.get(key) is not None:
            batching[key] = params[key]
    processes = params.get("num_parallel_processes_per_node", params.get("num_processes"))
    if processes is not None:
        batching["num_processes"] = processes
    if batching.get("per_node_batch_size") == 0:  # JADE: 0 meant time-based batching
        batching["time_based_batching"] = True
        del batching["per_node_batch_size"]
    if batching.get("time_based_batching") and batching.get("num_processes") is None:
        notes.append(
            f"{where}: time_based_batching without num_processes falls back to "
            "count-based batching (set num_processes to keep it)"
        )
        batching["time_based_batching"] = False

    out: dict[str, Any] = {"slurm": slurm, "batching": batching}
    if params.get("max_nodes") is not None:  # JADE: never more allocations at once
        out["max_concurrent_batches"] = params["max_nodes"]
    singularity = params.get("singularity_params")
    if singularity and singularity.get("enabled", True) and singularity.get("container"):
        out["container"] = {"image": singularity["container"], "runtime": "singularity"}
        for key in set(singularity) - {"container", "enabled"}:
            if singularity[key] not in (None, "", False):
                notes.append(f"{where}: singularity_params.{key} is not carried over")
    for key, default in UNMAPPED_SUBMITTER_DEFAULTS.items():
        value = params.get(key, default)
        if key == "resource_monitor_stats" or value == default:
            continue
        notes.append(f"{where}: {key} = {value!r} is not carried over")
    return out
