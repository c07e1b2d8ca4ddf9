"""`jobforge run`: a config's DAG, run once with real Airflow in this process.

Airflow gets a project-local AIRFLOW_HOME (default `.jobforge/airflow`, see `home`) with its
SQLite metadata DB, migrated once. The DAG is written as a small DAG file into that home's
DAGs folder (`dag.test()` runs only DAGs it can parse from there) and run with `dag.test()`.
The dags folder is jobforge's own: `dag.test()` parses all of it, so stale files go.

The user sees a progress line (`progress`) and, at the end, the results (`report`); Airflow's
own output goes to the task log files (`logs`), or to the console with --verbose.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_jobforge.airflow_compat import require_supported_airflow
from airflow_jobforge.config import load_config
from airflow_jobforge.config.pipeline import (
    Pipeline,
    is_pipeline_file,
    load_pipeline,
    load_stage_config,
    resolve_config_file,
)
from airflow_jobforge.dag.options import DagOptions, dag_id_for
from airflow_jobforge.embedded.home import DEFAULT_HOME, log_folder, prepare_airflow_home
from airflow_jobforge.embedded.logs import (
    RUN_LOG,
    LogRouter,
    TaskFailure,
    route_output,
    run_log_dir,
    task_logs,
)
from airflow_jobforge.embedded.progress import ProgressPrinter, progress_line, watching
from airflow_jobforge.embedded.report import RunResult, describe_failure, reports_jobs
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.planning.selection import Selection, rerun_kinds
from airflow_jobforge.rundir import NOT_WRITABLE, Summary, collect_results, summarize
from airflow_jobforge.rundir import unwritable_reason as _unwritable_reason
from airflow_jobforge.rundir.manifest import read_manifest, safe_run_id
from airflow_jobforge.rundir.pipeline import add_summaries, is_pipeline_run_dir, read_stages

__all__ = ["DEFAULT_HOME", "parse_params", "progress_line", "run", "run_config"]

DAG_FILE_TEMPLATE = '''"""Written by `jobforge run`; rebuilt on every run."""
from airflow_jobforge.config import load_config
from airflow_jobforge.config.pipeline import (
    Pipeline,
    is_pipeline_file,
    load_pipeline,
    load_stage_config,
    resolve_config_file,
)
from airflow_jobforge.dag import DagOptions, build_dag

dag = build_dag(load_config({config!r}), {dag_id!r}, DagOptions(**{options!r}), file={config!r})
'''
PIPELINE_DAG_FILE_TEMPLATE = '''"""Written by `jobforge run`; rebuilt on every run."""
from airflow_jobforge.config.pipeline import load_pipeline
from airflow_jobforge.dag import DagOptions, build_pipeline_dag

pipeline = load_pipeline({config!r}, check_configs=False)[0]
dag = build_pipeline_dag(pipeline, {dag_id!r}, DagOptions(**{options!r}), file={config!r})
'''


def run_config(
    config_file: str,
    *,
    output: str | None = None,
    params: dict[str, Any] | None = None,
    airflow_home: str | None = None,
    verbose: bool = False,
    **options: Any,
) -> tuple[str, Summary, Path]:
    """`run` with `DagOptions` fields as keyword arguments (`output` is the output dir),
    answered as (DAG run state, summary, run output dir)."""
    dag_options = DagOptions.take(DagOptions(output_dir=output), options)
    if options:
        raise TypeError(f"unknown options: {', '.join(options)}")
    result = run(
        config_file, dag_options, params=params, airflow_home=airflow_home, verbose=verbose
    )
    return result.state, result.summary, result.run_dir


def run(
    config_file: str,
    options: DagOptions | None = None,
    *,
    params: dict[str, Any] | None = None,
    airflow_home: str | None = None,
    verbose: bool = False,
) -> RunResult:
    """Run the config's DAG once with `dag.test()` in this process and say what happened.

    Config errors come before Airflow starts. Airflow's own output goes to the task log files
    (the console with `verbose`); the user sees a progress line while the batches run.

    :param config_file: the configuration (.json or .toml)
    :param options: how the tasks run; with the SLURM CLI or the local backend the output dir
        is made absolute and the nodes' python defaults to this interpreter
    :param params: the DAG run's params (`jobs`, `rerun_of`, overrides)
    :param airflow_home: AIRFLOW_HOME (default `$JOBFORGE_AIRFLOW_HOME`, else `.jobforge/airflow`)
    :param verbose: Airflow's logs on the console
    """
    # Report config errors before starting Airflow.
    if is_pipeline_file(config_file):
        config: Any = load_pipeline(config_file)[0]
    else:
        config = load_config(config_file)
    require_supported_airflow()
    pipeline = isinstance(config, Pipeline)
    home = Path(airflow_home or os.environ.get("JOBFORGE_AIRFLOW_HOME") or DEFAULT_HOME).resolve()
    params = params or {}
    options = _here(options or DagOptions())
    local = not options.ssh_conn_id
    with route_output(enabled=not verbose) as (console, router):
        prepare_airflow_home(home, console.err)
        dag_id = dag_id_for(config_file)
        options = options.for_dag(dag_id, config_file)
        dag = _load_dag(config, config_file, home, dag_id, options, verbose)
        base = Path(str(options.output_dir))
        selected = [] if pipeline else _selected_jobs(config, params, base if local else None)
        when = datetime.now(timezone.utc)
        run_id = _manual_run_id(when)
        log_dir = run_log_dir(log_folder(home), dag_id, run_id) if router else None
        if router is not None and log_dir is not None:
            router.open_run_log(log_dir / RUN_LOG)
        printer = ProgressPrinter(console.err)
        watch = None
        if local:
            watch = (
                _pipeline_progress(base / safe_run_id(run_id), _static_totals(config_file, config))
                if pipeline
                else _progress(base / safe_run_id(run_id), len(selected))
            )
        started = time.perf_counter()
        dr, failures = _run_with_progress(dag, params, when, router, log_dir, printer, watch)
        seconds = time.perf_counter() - started
        run_dir = base / safe_run_id(dr.run_id)
        if pipeline:
            stages = [stage.name for stage in config.stages]
            reader = collect_results if local else lambda path: _remote_records(dag, path)
            return _pipeline_result(dr, seconds, run_dir, stages, reader, local, log_dir, failures)
        records = collect_results(run_dir) if local else _remote_records(dag, run_dir)
        problem = _unwritable_reason(run_dir) if local else None
        reason = f"{NOT_WRITABLE} ({problem})" if problem else None
        return _result(
            dr,
            seconds,
            run_dir,
            local,
            log_dir,
            failures,
            selected=selected,
            records=records,
            summary=summarize(records.values(), selected, reason),
            output_problem=problem,
        )


def _result(
    dr: Any,
    seconds: float,
    run_dir: Path,
    local: bool,
    log_dir: Path | None,
    failures: list[TaskFailure],
    **what: Any,
) -> RunResult:
    """What every run's result holds, with `what` its jobs say (of a config or a pipeline)."""
    return RunResult(
        dag_run_id=dr.run_id,
        state=str(getattr(dr.state, "value", dr.state)),
        seconds=seconds,
        run_dir=run_dir,
        local_output=local,
        log_dir=log_dir,
        failed_tasks=failures,
        **what,
    )


def _here(options: DagOptions) -> DagOptions:
    """Without SSH the batches run from this machine: an absolute output dir (the DAG file
    is parsed elsewhere in the home) and, by default, this interpreter on the nodes."""
    if options.ssh_conn_id:
        return options
    output_dir = str(Path(options.output_dir).resolve()) if options.output_dir else None
    return replace(options, output_dir=output_dir, python=options.python or sys.executable)


@dataclass
class _Progress:
    """The progress line of a run whose output dir is readable here."""

    line: Callable[[], str | None]
    ended: threading.Event


def _progress(run_dir: Path, total: int) -> _Progress:
    ended = threading.Event()  # the last line then counts jobs without a record

    def line() -> str | None:
        if not run_dir.exists():
            return None
        return progress_line(run_dir, total, ended.is_set())

    return _Progress(line, ended)


def _run_with_progress(
    dag: Any,
    params: dict[str, Any],
    when: datetime,
    router: LogRouter | None,
    log_dir: Path | None,
    printer: ProgressPrinter,
    watch: _Progress | None,
) -> tuple[Any, list[TaskFailure]]:
    """dag.test() with the task logs routed and, where readable, the progress line."""
    progress = watching(watch.line, printer) if watch else contextlib.nullcontext()
    with _task_logs(router, log_dir, _announcer(printer)) as failures, progress:
        try:
            dr = _test(dag, params, when, router)
        finally:
            if watch:
                watch.ended.set()
    return dr, failures


def _load_dag(
    config: Any, config_file: str, home: Path, dag_id: str, options: DagOptions, verbose: bool
) -> Any:
    """Write the DAG file dag.test() parses, and build the same DAG here."""
    config_path = str(Path(config_file).resolve())
    dag_file = home / "dags" / f"{dag_id}.py"
    for stale in dag_file.parent.glob("jobforge_*.py"):  # dag.test() parses the whole folder
        if stale != dag_file:
            stale.unlink()
    pipeline = isinstance(config, Pipeline)
    template = PIPELINE_DAG_FILE_TEMPLATE if pipeline else DAG_FILE_TEMPLATE
    dag_file.write_text(
        template.format(config=config_path, dag_id=dag_id, options=options.to_dict())
    )
    from airflow.settings import configure_orm

    # Airflow reads AIRFLOW_HOME when first imported: the factory comes after the home is set.
    from airflow_jobforge.dag.factory import build_dag
    from airflow_jobforge.dag.pipeline import build_pipeline_dag

    configure_orm()
    from airflow_jobforge.embedded import execution_api

    if not execution_api.install() and verbose:
        print("jobforge: Airflow's stock in-process Execution API", file=sys.stderr)
    if pipeline:
        return build_pipeline_dag(config, dag_id, options, file=config_path)
    return build_dag(config, dag_id, options, file=config_path)


def _static_totals(pipeline_file: str, pipeline: Pipeline) -> dict[str, int]:
    """The job count of each stage with a config file (a generated stage's plan task writes
    its manifest, which says it, at once)."""
    return {
        stage.name: len(
            load_stage_config(resolve_config_file(pipeline_file, stage), stage=stage.name)[0].jobs
        )
        for stage in pipeline.stages
        if stage.config_file
    }


def _pipeline_progress(run_dir: Path, totals: dict[str, int]) -> _Progress:
    """The progress line of the stage that runs now: `stage 2/3 aggregate: <its line>`."""
    ended = threading.Event()

    def line() -> str | None:
        if not is_pipeline_run_dir(run_dir):
            return None
        stages = read_stages(run_dir)
        current = next((s for s in reversed(stages) if (run_dir / s.entry.name).is_dir()), None)
        if current is None:
            return None
        manifest = read_manifest(run_dir / current.entry.name)
        total = len(manifest.jobs) if manifest is not None else totals.get(current.entry.name, 0)
        where = f"stage {current.entry.number}/{len(stages)} {current.entry.name}"
        progress = progress_line(run_dir / current.entry.name, total, ended.is_set())
        return f"{where}: {progress}" if progress else where

    return _Progress(line, ended)


def _pipeline_result(
    dr: Any,
    seconds: float,
    run_dir: Path,
    stages: list[str],
    read: Callable[[Path], dict[str, Any]],
    local: bool,
    log_dir: Path | None,
    failures: list[TaskFailure],
) -> RunResult:
    """A pipeline run's result: the jobs of every stage, named `<stage>/<job>` (a stage's
    jobs are those its manifest names where it is readable here, else those it recorded)."""
    records: dict[str, Any] = {}
    selected: list[str] = []
    summaries = []
    for stage in stages:
        stage_dir = run_dir / stage
        manifest = read_manifest(stage_dir) if local else None
        stage_records = read(stage_dir)
        names = list(manifest.jobs) if manifest is not None else list(stage_records)
        selected += [f"{stage}/{n}" for n in names]
        records.update({f"{stage}/{n}": r for n, r in stage_records.items()})
        summaries.append(summarize(stage_records.values(), names))
    return _result(
        dr,
        seconds,
        run_dir,
        local,
        log_dir,
        failures,
        selected=selected,
        records=records,
        summary=add_summaries(summaries),
        pipeline=True,
    )


def _manual_run_id(when: datetime) -> str:
    """The run id dag.test() gives a run with this logical date and run_after: known before
    the run starts, so its log dir and output dir are too."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    return DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=when, run_after=when)


def _task_logs(
    router: LogRouter | None, log_dir: Path | None, on_failure: Callable[[TaskFailure], None]
) -> contextlib.AbstractContextManager[list[TaskFailure]]:
    if router is None or log_dir is None:
        return contextlib.nullcontext([])
    return task_logs(router, log_dir, on_failure)


def _announcer(printer: ProgressPrinter) -> Callable[[TaskFailure], None]:
    """Say at once when a task that runs the batches fails or will be retried: a retry
    delay would otherwise leave the user looking at an unchanging progress line."""

    def announce(failure: TaskFailure) -> None:
        if not reports_jobs(failure.task_id):
            printer.note(describe_failure(failure))

    return announce


def _test(dag: Any, params: dict[str, Any], when: datetime, router: LogRouter | None) -> Any:
    """dag.test(); Airflow failing itself (not a task) is one line, its traceback in the log."""
    try:
        return dag.test(run_conf=params, logical_date=when, run_after=when)
    except Exception as exc:
        if router is None:
            raise
        traceback.print_exc(file=router)
        raise JobForgeError(
            f"Airflow could not run the DAG: {exc} (traceback in {router.run_log_path})"
        ) from exc


def _selected_jobs(config: Any, params: dict[str, Any], base: Path | None) -> list[str]:
    """The jobs the run will run: the `jobs` globs and, with `rerun_of` (and the earlier
    run's records readable here), only what did not succeed in that run."""
    patterns = tuple(params.get("jobs") or ())
    rerun_of = params.get("rerun_of")
    earlier = None
    if rerun_of and base is not None:
        earlier = collect_results(base / safe_run_id(str(rerun_of)))
    kinds = rerun_kinds(params.get("rerun"))
    return Selection(patterns, earlier or None, kinds)([j.name for j in config.jobs])


def _remote_records(dag: Any, run_dir: Path) -> dict[str, Any]:
    task = next(iter(t for t in dag.tasks if hasattr(t, "cluster")))
    client = task.hook.get_client()
    try:
        return client.read_results(str(run_dir))
    finally:
        client.close()


def parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise JobForgeError(f"--param {item!r} is not KEY=VALUE")
        if key in ("jobs", "rerun"):
            params[key] = [v for v in value.split(",") if v]
        else:
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = value
    return params
