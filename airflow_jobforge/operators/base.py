"""What the provider's operators share: the cluster they talk to, and the DAG run key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow_jobforge.errors import JobForgeError, SlurmError
from airflow_jobforge.hooks.slurm import ClusterSettings, SlurmHook
from airflow_jobforge.operators.attempts import Attempt, attempt
from airflow_jobforge.planning.selection import Selection, rerun_kinds
from airflow_jobforge.rundir.events import Event, event_text, events_file
from airflow_jobforge.rundir.manifest import safe_run_id
from airflow_jobforge.slurm.client import SubmittedJob
from airflow_jobforge.slurm.protocol import BatchClient
from airflow_jobforge.slurm.request import RequestData, SubmittedData
from airflow_jobforge.slurm.tags import run_key

# Infrastructure errors (API server, SSH or the SLURM controller unreachable) are retried
# with exponential backoff for ~10 minutes: 15-30 s, 30-60 s, 1-2 min, then every 3 min.
# A job's own failure never is: it raises AirflowFailException. Retries adopt what the
# series of tries already submitted (see `Attempt`), so a retry never submits twice.
INFRA_RETRIES = 6
INFRA_RETRY_DELAY = timedelta(seconds=15)
INFRA_MAX_RETRY_DELAY = timedelta(minutes=3)
INFRA_BACKOFF = 2.0


def with_infra_retries(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Operator kwargs with jobforge's infrastructure retry policy where neither the task nor
    the DAG's `default_args` say otherwise."""
    from airflow_jobforge.airflow_compat import exponential_backoff

    given = kwargs.get("default_args") or {}
    for key, value in (
        ("retries", INFRA_RETRIES),
        ("retry_delay", INFRA_RETRY_DELAY),
        ("retry_exponential_backoff", exponential_backoff(INFRA_BACKOFF)),
        ("max_retry_delay", INFRA_MAX_RETRY_DELAY),
    ):
        if key not in kwargs and key not in given:
            kwargs[key] = value
    return kwargs


class ClusterMixin:
    """`cluster` is ClusterSettings as a dict: plain data that serializes with the DAG.

    `stage`: the pipeline stage the task belongs to, if any. A stage writes under its own
    dir of the pipeline's run dir and tags its SLURM jobs with its own run key, so two
    stages' batches of the same name never meet (`run_output_dir`, `context_run_key`)."""

    cluster: dict[str, Any]
    stage: str | None = None

    def __init__(self, *args: Any, stage: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stage = stage

    @property
    def hook(self) -> SlurmHook:
        return SlurmHook.from_settings(ClusterSettings(**self.cluster))

    def selection(
        self, context: Any, base_output_dir: str, client: BatchClient | None = None
    ) -> Selection:
        """`run_selection` with a client of its own when none is given; a bad `rerun_of`
        fails the task for good (a retry would not make it right), while an outage reading
        the earlier run's records (SSH, the SLURM controller) takes the infrastructure
        retries (`with_infra_retries`): failing for good would lose the rerun to a blip."""
        if not context["params"].get("rerun_of"):
            return Selection(tuple(context["params"].get("jobs") or ()))
        from airflow_jobforge.airflow_compat import AirflowFailException

        own = client is None
        client = client or self.hook.get_client()
        try:
            return run_selection(context, base_output_dir, client)
        except SlurmError:
            raise
        except JobForgeError as exc:
            raise AirflowFailException(str(exc)) from exc
        finally:
            if own:
                client.close()

    @property
    def settings(self) -> ClusterSettings:
        """Resolved at run time (reads the `slurm` connection once per call)."""
        return ClusterSettings(**self.cluster).resolved()


def task_key(context: Any) -> tuple[str, str, str] | None:
    """(dag id, task id, run id) of the running task instance, for `killed_by_user`; None
    in a hand-made context."""
    dag, task_id = context.get("dag"), getattr(context.get("ti"), "task_id", None)
    if dag is None or task_id is None or "run_id" not in context:
        return None
    return dag.dag_id, task_id, context["run_id"]


def killed_by_user(key: tuple[str, str, str] | None, log: Any) -> bool:
    """Whether on_kill runs because a user acted on the task (mark failed/success, clear)
    rather than because its worker is going away (shutdown, a dead executor worker): only
    then may a healthy SLURM job be canceled. After a user's action the task instance is no
    longer `running`. A state that cannot be read counts as no user action: cancelling a
    healthy batch costs more than leaving one the user wanted gone (the wait's kill still
    cancels it). No key (on_kill called by hand) counts as a user's kill."""
    if key is None:
        return True
    dag_id, task_id, run_id = key
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = RuntimeTaskInstance.get_task_states(
            dag_id=dag_id, task_ids=[task_id], run_ids=[run_id]
        )
    except Exception as exc:
        log.warning("task state unknown (%s): its SLURM job is not canceled", exc)
        return False
    state = states.get(run_id, {}).get(task_id)
    if str(state) == "running":
        log.info("terminated by its worker, not by a user: its SLURM job is not canceled")
        return False
    return True


def context_attempt(context: Any, retries: int | None) -> Attempt:
    ti = context["ti"]
    return attempt(ti.try_number, getattr(ti, "max_tries", None), retries or 0)


def _stage(context: Any) -> str | None:
    return getattr(context.get("task"), "stage", None)


def context_run_key(context: Any) -> str:
    stage = _stage(context)
    return run_key(context["dag"].dag_id, context["run_id"], stage)


def run_dir_of(base: str, run_id: str, stage: str | None = None) -> str:
    """`<base>/<run id>[/<stage>]`: each DAG run (and each stage of a pipeline run) writes
    under its own directory, so records of other runs never mix in."""
    run_dir = f"{base.rstrip('/')}/{safe_run_id(run_id)}"
    return f"{run_dir}/{stage}" if stage else run_dir


def run_output_dir(base: str, context: Any) -> str:
    return run_dir_of(base, context["run_id"], _stage(context))


def pull_own(context: Any, task_id: str, key: str = "return_value") -> Any:
    """An XCom of a task of the same batch: in a generated stage the batch's tasks are
    mapped (one map index per batch) and each reads its own index's value."""
    ti = context["ti"]
    index = getattr(ti, "map_index", None)
    if isinstance(index, int) and index >= 0:
        return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=index)
    if key == "return_value":
        return ti.xcom_pull(task_ids=task_id)
    return ti.xcom_pull(task_ids=task_id, key=key)


def run_selection(context: Any, base_output_dir: str, client: BatchClient | None) -> Selection:
    """The jobs this DAG run runs: those the `jobs` param selects and, with `rerun_of`, only
    those that did not succeed in that earlier run (its `rerun` outcomes).

    Raises JobForgeError for a `rerun_of` naming a run without any record: a typo would
    otherwise rerun everything."""
    params = context["params"]
    patterns = tuple(params.get("jobs") or ())
    rerun_of = params.get("rerun_of")
    if not rerun_of:
        return Selection(patterns)
    kinds = rerun_kinds(params.get("rerun"))
    earlier_dir = run_dir_of(base_output_dir, str(rerun_of), _stage(context))
    earlier = client.read_results(earlier_dir)
    if not earlier:
        raise JobForgeError(
            f"rerun_of {rerun_of!r}: no result records in {earlier_dir}; is it a run of this DAG?"
        )
    return Selection(patterns, earlier, kinds)


def emit_events(
    client: BatchClient, run_dir: str, source: str, events: list[Event], log: Any
) -> None:
    """Add to the run's event log (`events/<source>.jsonl`, on the cluster). Events are
    evidence, not state: a failure to write one is logged, never raised."""
    try:
        client.append_text(str(events_file(run_dir, source)), event_text(events))
    except Exception as exc:
        log.warning("event log %s not written: %s", run_dir, exc)


def job_info(job: SubmittedJob, request: RequestData | None = None) -> SubmittedData:
    """XCom form of a SubmittedJob (what sensors and result tasks pull)."""
    return {
        "job_id": job.job_id,
        "job_name": job.job_name,
        "slurm_dir": job.slurm_dir,
        "adopted": job.adopted,
        "exit_file": job.exit_file,
        "stdout": job.stdout_path,
        "stderr": job.stderr_path,
        "request": request,
    }
