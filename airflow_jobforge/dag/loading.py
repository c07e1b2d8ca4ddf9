"""DAG files' entry points over a folder: one DAG per config or pipeline file, a broken
file becoming a placeholder DAG that says why, never hiding the others."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import MutableMapping
from typing import Any

from airflow.sdk import DAG, get_parsing_context

from airflow_jobforge.config.pipeline import is_pipeline_file, load_pipeline
from airflow_jobforge.dag.factory import build_render_dag
from airflow_jobforge.dag.options import DAG_ID_PREFIX, DagOptions, dag_id_for
from airflow_jobforge.dag.pipeline import build_pipeline_dag
from airflow_jobforge.dag.render_cache import render_file
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.operators.config_error import ConfigErrorOperator

log = logging.getLogger(__name__)


def config_paths(path_or_glob: str | os.PathLike[str]) -> list[str]:
    pattern = str(path_or_glob)
    return sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]


def load_dags(
    path_or_glob: str | os.PathLike[str],
    namespace: MutableMapping[str, Any],
    options: DagOptions | None = None,
    *,
    dag_id_prefix: str = DAG_ID_PREFIX,
    cache: bool = True,
    **kwargs: Any,
) -> dict[str, DAG]:
    """One DAG per config or pipeline file matching `path_or_glob` (`<dag_id_prefix><file
    stem>`), put in `namespace` (a DAG file's globals()), all with the same options. A file
    with `stages` (a pipeline, also as JADE's `jade pipeline create` writes it) becomes a
    pipeline DAG (`build_pipeline_dag`).

    A task's worker re-parses the whole DAG file and says which DAG it wants
    (`get_parsing_context()`): then only that config is read and built, and none when no
    config of this call has that id, as Airflow documents for dynamic DAGs. Without a
    context (the dag-processor, tests) every config is built. Renders come from
    `render_cache` (`cache=False` skips it), so a warm worker never re-validates a config.

    A broken config becomes a failing placeholder DAG of its own name, shown as "BROKEN
    CONFIG <dag id>", its error in the description, docs and only task; it never hides the
    others. It is not an Airflow import error of this file on purpose: Airflow 3.3 marks
    every DAG of a file with an import error stale (`_update_import_errors`): gone from the
    DAG list, never scheduled, refused when triggered. `raise_config_errors` in a DAG file of
    its own makes broken configs import errors of that file instead.

    :param path_or_glob: a config file, or a glob of them (`/configs/*.json`)
    :param namespace: where the DAGs go, the DAG file's `globals()`
    :param options: how the tasks run (`DagOptions`)
    :param dag_id_prefix: each DAG's id is this prefix plus the file's stem
    :param cache: use the on-disk render cache (`$JOBFORGE_CACHE_DIR`)
    :param kwargs: `DagOptions` fields, then `build_render_dag`'s (schedule, any `DAG(...)`
        argument)
    """
    options = DagOptions.take(options, kwargs)
    wanted = get_parsing_context().dag_id
    dags = {}
    for path in config_paths(path_or_glob):
        dag_id = dag_id_for(path, dag_id_prefix)
        if wanted is not None and dag_id != wanted:
            continue
        if is_pipeline_file(path):
            dag, error = _pipeline_dag(path, dag_id, options, kwargs)
        else:
            dag, error = _config_dag(path, dag_id, options, kwargs, cache)
        if dag is None:
            assert error is not None
            log.error("jobforge config %s: %s", path, error)
            dag = _broken_dag(dag_id, path, error)
        dags[dag_id] = namespace[dag_id] = dag
    return dags


def _config_dag(
    path: str, dag_id: str, options: DagOptions, kwargs: dict[str, Any], cache: bool
) -> tuple[DAG | None, str | None]:
    rendered = render_file(path, job_tasks=options.job_tasks, use_cache=cache)
    if rendered.render is None:
        return None, rendered.error
    try:
        return build_render_dag(rendered.render, dag_id, options, file=path, **dict(kwargs)), None
    except JobForgeError as exc:
        return None, exc.one_line()


def _pipeline_dag(
    path: str, dag_id: str, options: DagOptions, kwargs: dict[str, Any]
) -> tuple[DAG | None, str | None]:
    """A pipeline file's DAG. Its static stages' renders come from the render cache; the
    pipeline file itself is small and read at each parse."""
    try:
        # Each static stage's config is validated as it is rendered (from the render cache).
        pipeline, notes = load_pipeline(path, check_configs=False)
        for note in notes:
            log.info("jobforge pipeline %s: not carried over: %s", path, note)
        return build_pipeline_dag(pipeline, dag_id, options, file=path, **dict(kwargs)), None
    except JobForgeError as exc:
        return None, exc.one_line()


def config_errors(
    path_or_glob: str | os.PathLike[str], *, job_tasks: bool | None = None
) -> list[str]:
    """The error of each broken config or pipeline matching `path_or_glob` (one line each)."""
    errors = []
    for path in config_paths(path_or_glob):
        if is_pipeline_file(path):
            try:
                load_pipeline(path)
            except JobForgeError as exc:
                errors.append(exc.one_line())
            continue
        rendered = render_file(path, job_tasks=job_tasks)
        if rendered.error is not None:
            errors.append(rendered.error)
    return errors


def raise_config_errors(
    path_or_glob: str | os.PathLike[str], *, job_tasks: bool | None = None
) -> None:
    """Fail when a config matching `path_or_glob` is broken: call it from a DAG file that
    defines no DAG, and the dag-processor records the error as that file's import error —
    the UI's import-errors banner, `GET /api/v2/importErrors`, `airflow dags
    list-import-errors` — naming each broken config, job and reason.

    Why a file of its own: Airflow 3.3 marks every DAG of a file that has an import error
    stale, so raising in the file of `load_dags` would hide and stop its good DAGs.
    Cheap: the same cached renders as `load_dags`; workers never parse a file without DAGs.
    Airflow's discovery safe mode only parses files that contain "airflow" and "dag": say
    "DAG" in that file's docstring.

    :param path_or_glob: the same config file or glob as the `load_dags` call
    :param job_tasks: as given to `load_dags`
    """
    errors = config_errors(path_or_glob, job_tasks=job_tasks)
    if errors:
        n = len(errors)
        raise JobForgeError(
            f"{n} broken jobforge config{'s' if n != 1 else ''}:\n" + "\n".join(errors)
        )


def _broken_dag(dag_id: str, path: str, error: str) -> DAG:
    first_line = error.splitlines()[0]
    with DAG(
        dag_id,
        schedule=None,
        catchup=False,
        tags=["jobforge", "config-error"],
        dag_display_name=f"BROKEN CONFIG {dag_id}",
        description=f"BROKEN CONFIG {path}: {first_line}"[:1000],
        doc_md=f"### Broken jobforge config `{path}`\n\n```\n{error}\n```",
    ) as dag:
        ConfigErrorOperator(task_id="config_error", error=error)
    return dag
