"""A submit request as task data: the submit task hands it to its wait and result tasks (XCom)
and, slimmed to job names, to the trigger that waits for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from airflow_jobforge.config.models import ContainerParams, SlurmParams
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.rundir.batches import BatchSpec, restrict_batch
from airflow_jobforge.slurm.script import SubmitRequest


class RequestData(TypedDict):
    """A `SubmitRequest` as JSON data. `batch` is `BatchSpec.to_dict()`, or in a trigger's
    kwargs the slim form (`job_names` instead of `jobs`, see `slim_request`)."""

    tag: str
    batch: dict[str, Any]
    slurm: dict[str, Any]
    output_dir: str
    container: dict[str, Any] | None
    python: str
    pythonpath: str | None
    workdir: str | None
    array: bool
    array_throttle: int | None


class _Submitted(TypedDict):
    job_id: str
    job_name: str
    slurm_dir: str
    adopted: bool
    exit_file: str
    stdout: str
    stderr: str
    request: RequestData | None


class SubmittedData(_Submitted, total=False):
    """A submitted SLURM job as the submit task pushes it (its XCom return value) and the
    wait and result tasks pull it; a wait's resubmission adds its `attempt`."""

    attempt: int


def request_to_dict(request: SubmitRequest) -> RequestData:
    """A SubmitRequest as XCom-safe JSON data, so a later task can resubmit it."""
    return {
        "tag": request.tag,
        "batch": request.batch.to_dict(),
        "slurm": request.slurm.model_dump(mode="json"),
        "output_dir": request.output_dir,
        "container": request.container.model_dump(mode="json") if request.container else None,
        "python": request.python,
        "pythonpath": request.pythonpath,
        "workdir": request.workdir,
        "array": request.array,
        "array_throttle": request.array_throttle,
    }


def request_from_dict(data: Mapping[str, Any]) -> SubmitRequest:
    container = data.get("container")
    return SubmitRequest(
        tag=data["tag"],
        batch=BatchSpec.from_dict(dict(data["batch"])),
        slurm=SlurmParams.model_validate(data["slurm"]),
        output_dir=data["output_dir"],
        container=ContainerParams.model_validate(container) if container else None,
        python=data.get("python") or "python3",
        pythonpath=data.get("pythonpath"),
        workdir=data.get("workdir"),
        array=bool(data.get("array")),
        array_throttle=data.get("array_throttle"),
    )


def slim_request(request: RequestData) -> RequestData:
    """A request for a trigger's kwargs: its batch's jobs by name only.

    The triggerer passes every trigger's kwargs through a pipe to its runner: 100 waits
    each carrying a 1,000-job batch spec (15 MB) deadlocked Airflow 3.3's triggerer (its
    supervisor blocked writing to the runner while the runner blocked writing logs). The
    full spec stays in the submit task's XCom; `restore_request` puts it back."""
    batch = dict(request["batch"])
    jobs = batch.pop("jobs")
    batch["job_names"] = [job["name"] for job in jobs]
    if any(job.get("claim_index") is not None for job in jobs):  # a retry or continuation
        batch["job_places"] = [_place(i, job) for i, job in enumerate(jobs)]
    return {**request, "batch": batch}


def slim_job(job: SubmittedData) -> SubmittedData:
    """A submitted job's XCom as a trigger's echo: its request `slim_request`ed, unless it
    has none or already is (the submit task pushes it slim)."""
    request = job.get("request")
    if not request or "jobs" not in request.get("batch", {}):
        return dict(job)
    return {**job, "request": slim_request(request)}


def restore_request(request: RequestData, full_batch: Mapping[str, Any] | None) -> RequestData:
    """`slim_request` undone with the batch's full spec (the batch the slim one names is
    that spec restricted to its jobs)."""
    batch = request["batch"]
    if "job_names" not in batch:
        return dict(request)
    full_batch = full_batch or {}
    if "jobs" not in full_batch:
        raise JobForgeError(
            f"batch {batch['batch']}: its jobs' specs are neither in the DAG nor in the submit "
            "task's XCom (give the wait and result tasks the batch spec, as the factory does)"
        )
    full = BatchSpec.from_dict(dict(full_batch))
    spec = restrict_batch(full, batch["job_names"], batch["batch"])
    return {**request, "batch": spec.to_dict()}


def job_places_of(batch: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(job, place in the planned batch) of a batch spec dict, full or slim: what its work
    sharing claims are counted by (rundir.claims)."""
    if "job_names" in batch:
        names = list(batch["job_names"])
        return list(zip(names, batch.get("job_places") or range(len(names)), strict=True))
    return [(job["name"], _place(i, job)) for i, job in enumerate(batch.get("jobs", ()))]


def _place(position: int, job: Mapping[str, Any]) -> int:
    """`JobSpec.place` of a job spec dict."""
    index = job.get("claim_index")
    return position if index is None else int(index)


def job_names_of(batch: Mapping[str, Any]) -> list[str]:
    """The job names of a batch spec dict, full or slim."""
    if "job_names" in batch:
        return list(batch["job_names"])
    return [job["name"] for job in batch.get("jobs", ())]
