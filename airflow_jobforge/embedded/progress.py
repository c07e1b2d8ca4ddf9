"""The progress line of `jobforge run`, read from the run's result records.

On a terminal one line is repainted in place (`\\r`). Anywhere else (`> log`, CI, a pipe)
carriage returns pile up into one endless log line, so a line is printed, newline-ended,
only when its text changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from airflow_jobforge.rundir import collect_results

INTERVAL_S = 1.0


def progress_line(output_dir: Path, total: int, ended: bool = False) -> str:
    """Jobs done/failed/running, from the records and job output files of a run dir.

    Running is guessed from jobs that have an output file but no record yet; once the run
    has `ended`, such jobs are not running but without a record, and the line says so.
    """
    records = collect_results(output_dir)
    ok = sum(r.succeeded for r in records.values())
    failed = sum(r.status == "finished" and not r.succeeded for r in records.values())
    other = len(records) - ok - failed
    done = f"jobs: {len(records)}/{total} done ({ok} ok, {failed} failed, {other} canceled/missing)"
    if ended:
        return done + (f", {total - len(records)} without a record" if len(records) < total else "")
    started = len(list((output_dir / "job-output").glob("*.out")))
    running = max(started - ok - failed - sum(r.status == "missing" for r in records.values()), 0)
    return f"{done}, {running} running"


class ProgressPrinter:
    """Shows successive progress lines on `stream`: repainted on a TTY, else one per change."""

    def __init__(self, stream: TextIO, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._last: str | None = None
        self._lock = threading.RLock()  # the watcher thread and task notes both write

    def show(self, line: str) -> None:
        with self._lock:
            if line == self._last:
                return
            if self.tty:
                pad = " " * max(len(self._last or "") - len(line), 0)  # clear a longer line
                self.stream.write(f"\r{line}{pad}")
            else:
                self.stream.write(f"{line}\n")
            self.stream.flush()
            self._last = line

    def note(self, text: str) -> None:
        """A line of its own between progress lines; a repainted line is drawn again below."""
        with self._lock:
            last = self._last
            if self.tty and last is not None:
                self.stream.write("\r" + " " * len(last) + "\r")
            self.stream.write(f"{text}\n")
            self.stream.flush()
            if self.tty and last is not None:
                self._last = None
                self.show(last)

    def close(self) -> None:
        """End a repainted line, so what follows starts on a line of its own."""
        with self._lock:
            if self.tty and self._last is not None:
                self.stream.write("\n")
                self.stream.flush()
            self._last = None


@contextmanager
def watching(
    line: Callable[[], str | None], printer: ProgressPrinter, interval: float = INTERVAL_S
) -> Iterator[None]:
    """A thread shows `line()` every `interval` while the body runs, and once at its end."""
    stop = threading.Event()

    def show() -> None:
        try:
            text = line()
        except OSError:  # the run dir is being written or is unreadable: next time
            return
        if text is not None:
            printer.show(text)

    def watch() -> None:
        while not stop.wait(interval):
            show()

    thread = threading.Thread(target=watch, name="jobforge-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(interval + 5)
        show()
        printer.close()
