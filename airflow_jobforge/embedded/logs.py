"""Airflow's console output of `jobforge run`, sent to log files instead of the user's terminal.

`dag.test()` runs every task in this process (`_run_task` -> the in-process supervisor), and
Airflow's logging (structlog, and stdlib logging through structlog's formatter) writes to the
stdout it found when it was configured. A task that fails logs "Task failed with exception"
with a full traceback there; a job that fails on purpose made two of them, plus warnings.

So, without --verbose, this process's stdout and stderr are a `LogRouter` for the whole run,
installed before airflow is imported (Airflow's handlers then hold the router): what Airflow,
warnings or libraries write goes to the log file of the task running now, named as Airflow
names task logs (`dag_id=/run_id=/task_id=/attempt=N.log` under base_log_folder, so Airflow's
own log reader finds them), and outside tasks to the run's `jobforge-run.log` next to them.
The terminal keeps only what jobforge prints on the streams saved before.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

RUN_LOG = "jobforge-run.log"


class LogRouter(io.TextIOBase):
    """A text stream writing to the current task's log, else the run's log.

    Until the run's log file is known (its name needs the run id, which needs airflow
    imported), text is held in memory and written to the file when it opens. Airflow's
    handlers and cached loggers keep this stream for the life of the process, so after a
    run it keeps writing to that run's log, and a later run (tests, a caller running several
    configs) takes it over: `start` for a routed run, `pass_through` for a --verbose one.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._held: io.StringIO | None = io.StringIO()
        self._run_log: TextIO | None = None
        self._task_log: TextIO | None = None
        self._console: TextIO | None = None
        self.run_log_path: Path | None = None

    def write(self, text: str) -> int:
        with self._lock:
            target = self._task_log or self._run_log or self._held or self._console
            (target or sys.__stdout__ or io.StringIO()).write(text)
        return len(text)

    def start(self) -> None:
        """A new routed run: hold text until its run log opens."""
        with self._lock:
            self._close_run_log()
            self._held, self._console = io.StringIO(), None

    def pass_through(self, console: TextIO) -> None:
        """A --verbose run: whoever still holds this stream writes to the console."""
        with self._lock:
            self._close_run_log()
            self._held, self._console = None, console

    def _close_run_log(self) -> None:
        if self._run_log is not None:
            self._run_log.close()
            self._run_log = None
            self.run_log_path = None

    def flush(self) -> None:
        with self._lock:
            for stream in (self._task_log, self._run_log):
                if stream is not None:
                    stream.flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def open_run_log(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._close_run_log()
            self._run_log = open(path, "a", encoding="utf-8", buffering=1)
            if self._held is not None:
                self._run_log.write(self._held.getvalue())
            self._held = None
            self.run_log_path = path

    @contextmanager
    def to_file(self, path: Path) -> Iterator[None]:
        """Everything written meanwhile (any thread) goes to `path`: one task runs at a time."""
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = open(path, "a", encoding="utf-8", buffering=1)
        with self._lock:
            previous, self._task_log = self._task_log, stream
        try:
            yield
        finally:
            with self._lock:
                self._task_log = previous
            stream.close()

    def close(self) -> None:
        with self._lock:
            self._close_run_log()
        super().close()


_router: LogRouter | None = None  # one per process: see LogRouter


@dataclass(frozen=True)
class Console:
    """The terminal's streams, saved before the router replaces sys.stdout/sys.stderr."""

    out: TextIO
    err: TextIO


@contextmanager
def route_output(enabled: bool) -> Iterator[tuple[Console, LogRouter | None]]:
    """sys.stdout/sys.stderr -> the process' LogRouter while the run lasts (when `enabled`).

    Logging handlers that already write to the console (Airflow imported earlier in this
    process) are pointed at the router too, and back afterwards.
    """
    global _router
    console = Console(sys.stdout, sys.stderr)
    if not enabled:
        if _router is not None:
            _router.pass_through(console.out)
        yield console, None
        return
    router = _router = _router or LogRouter()
    router.start()
    consoles = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}
    moved = [(h, h.stream) for h in _stream_handlers() if id(h.stream) in consoles]
    for handler, _ in moved:
        handler.setStream(router)
    sys.stdout = sys.stderr = router  # type: ignore[assignment]
    try:
        yield console, router
    finally:
        sys.stdout, sys.stderr = console.out, console.err
        for handler, stream in moved:
            handler.setStream(stream)
        router.flush()


def _stream_handlers() -> list[logging.StreamHandler[Any]]:
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    handlers = (handler for logger in loggers for handler in logger.handlers)
    return [
        h
        for h in handlers
        if isinstance(h, logging.StreamHandler)
        and not isinstance(h, logging.FileHandler)
        # logging's last-resort handler reads sys.stderr each time: rerouted with it already
        and not isinstance(getattr(type(h), "stream", None), property)
    ]


def run_log_dir(log_folder: Path, dag_id: str, run_id: str) -> Path:
    return log_folder / f"dag_id={dag_id}" / f"run_id={run_id}"


def task_log_path(run_dir: Path, task_id: str, map_index: int, try_number: int) -> Path:
    """Airflow's default log_filename_template, for this run's task instance."""
    mapped = f"map_index={map_index}/" if map_index >= 0 else ""
    return run_dir / f"task_id={task_id}" / f"{mapped}attempt={try_number}.log"


@dataclass(frozen=True)
class TaskFailure:
    task_id: str
    state: str  # failed | up_for_retry
    attempt: int
    error: str  # the first line of the exception
    log: Path


@contextmanager
def task_logs(
    router: LogRouter, run_dir: Path, on_failure: Callable[[TaskFailure], None] | None = None
) -> Iterator[list[TaskFailure]]:
    """Each task of `dag.test()` logs into its own file; yields the list of task failures,
    filled (and passed to `on_failure`) as they happen, retried attempts included.

    `dag.test()` runs a task through the module function `_run_task` (also for a deferred
    task's trigger and resumption), looked up at call time: wrapping it is the one seam
    that knows which task instance runs. Airflow without it: everything stays in the run log.
    """
    failures: list[TaskFailure] = []
    try:
        from airflow.sdk.definitions import dag as dag_module

        original: Callable[..., Any] = dag_module._run_task
    except (ImportError, AttributeError):
        yield failures
        return

    def run_task(*, ti: Any, task: Any, run_triggerer: bool = False) -> Any:
        path = task_log_path(run_dir, ti.task_id, ti.map_index, ti.try_number)
        with router.to_file(path):
            result = original(ti=ti, task=task, run_triggerer=run_triggerer)
        state = getattr(ti, "state", None)
        state = str(getattr(state, "value", state))
        if state in ("failed", "up_for_retry"):
            error = getattr(result, "error", None)
            text = str(error).strip().splitlines() if error is not None else []
            failure = TaskFailure(
                ti.task_id, state, ti.try_number, text[0] if text else "see its log", path
            )
            failures.append(failure)
            if on_failure is not None:
                on_failure(failure)
        return result

    dag_module._run_task = run_task
    try:
        yield failures
    finally:
        dag_module._run_task = original
