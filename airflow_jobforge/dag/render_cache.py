"""A config file's Render (or its error), cached on disk by a hash of what decides it.

Why: every Airflow 3 task re-parses its DAG file; for a 100,000-job config, loading,
validating, planning and building the batch specs takes ~2.5 s, reading a cached Render
~0.1 s. The key is a hash of the file's bytes, its path (errors name it), `job_tasks`, the
package version and the source of the modules that compute a Render — so editing the config
or upgrading (or patching) jobforge can only miss the cache, never serve a stale Render.

Format: pickle of plain data (str, tuples, dicts, frozen dataclasses of them), because it
loads ~6x faster than JSON here and keeps tuples tuples. The job names and each batch's spec
and names are pickles of their own inside it, unpickled when first read (`BatchRender.spec`,
`.jobs`): a worker reads one batch's.
Pickle runs code when it loads, so a cache file is only read from a directory this user owns
and nobody else may write to; anything else, and any file that fails to load or does not
carry its own key, counts as a miss and is rebuilt. Writes go to a temporary file in the same
directory and are renamed into place: readers see a whole file or none, and two processes
writing the same entry at once both write the same bytes, the last rename wins.

Where: `$JOBFORGE_CACHE_DIR`, else `$AIRFLOW_HOME/jobforge-cache`, else
`~/.cache/jobforge`. `JOBFORGE_CACHE_DIR=off` turns the cache off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import airflow_jobforge
from airflow_jobforge.config import load_config
from airflow_jobforge.dag.render import Render, render_config
from airflow_jobforge.errors import JobForgeError

log = logging.getLogger(__name__)

FORMAT = 3
SUFFIX = ".render.pickle"

# The modules whose code decides a Render: a change to any of them changes every key.
_SOURCES = (
    "dag/render.py",
    "dag/render_cache.py",
    "planning/planner.py",
    "config/graph.py",
    "rundir/batches.py",
    "config/models.py",
    "config/fields.py",
    "config/validation.py",
    "config/io.py",
)
_code_digest: str | None = None


@dataclass(frozen=True)
class FileRender:
    """What a config file renders to: a Render, or the one-line error of a broken config."""

    render: Render | None
    error: str | None = None
    cached: bool = False


def cache_dir() -> Path | None:
    configured = os.environ.get("JOBFORGE_CACHE_DIR")
    if configured is not None:
        return None if configured.strip().lower() in ("", "off", "0", "none") else Path(configured)
    home = os.environ.get("AIRFLOW_HOME")
    if home:
        return Path(home) / "jobforge-cache"
    return Path.home() / ".cache" / "jobforge"


def code_digest() -> str:
    """Hash of the package version and the render's own code (computed once per process)."""
    global _code_digest
    if _code_digest is None:
        digest = hashlib.sha256(f"{airflow_jobforge.__version__}|{FORMAT}".encode())
        digest.update(sys.version.encode())
        root = Path(airflow_jobforge.__file__).parent
        for name in _SOURCES:
            try:
                digest.update((root / name).read_bytes())
            except OSError:
                digest.update(f"missing {name}".encode())
        _code_digest = digest.hexdigest()
    return _code_digest


def entry_prefix(path: str, job_tasks: bool | None) -> str:
    """Names the cache files of one (config path, job_tasks): a new entry replaces old ones."""
    return hashlib.sha256(f"{os.path.abspath(path)}|{job_tasks}".encode()).hexdigest()[:16]


def cache_key(path: str, content: bytes, job_tasks: bool | None) -> str:
    digest = hashlib.sha256(code_digest().encode())
    digest.update(f"|{os.path.abspath(path)}|{path}|{job_tasks}|".encode())
    digest.update(content)
    return digest.hexdigest()


def render_file(path: str, *, job_tasks: bool | None = None, use_cache: bool = True) -> FileRender:
    """The Render of the config file at `path`, from the cache when its entry is there."""
    directory = cache_dir() if use_cache else None
    if directory is None:
        return _render_fresh(path, job_tasks)
    try:
        content = Path(path).read_bytes()
    except OSError:
        return _render_fresh(path, job_tasks)  # load_config reports why it cannot be read
    key = cache_key(path, content, job_tasks)
    entry = directory / f"{entry_prefix(path, job_tasks)}-{key}{SUFFIX}"
    cached = _read(directory, entry, key)
    if cached is not None:
        return cached
    rendered = _render_fresh(path, job_tasks)
    try:
        unchanged = Path(path).read_bytes() == content
    except OSError:
        unchanged = False
    if unchanged:  # else the file changed while it was read: its key would lie
        _write(directory, entry, key, rendered)
    return rendered


def _render_fresh(path: str, job_tasks: bool | None) -> FileRender:
    try:
        config = load_config(path)
        return FileRender(render_config(config, job_tasks=job_tasks, file=path, validated=True))
    except JobForgeError as exc:
        return FileRender(None, exc.one_line())


def _private_dir(directory: Path) -> bool:
    """Only a directory of ours that no one else can write to may hold pickles we load."""
    try:
        info = directory.stat()
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return owner_ok and stat.S_ISDIR(info.st_mode) and not info.st_mode & 0o022


def _read(directory: Path, entry: Path, key: str) -> FileRender | None:
    if not _private_dir(directory):
        return None
    try:
        with open(entry, "rb") as handle:
            payload = pickle.load(handle)  # our own file in a directory only we can write
        if not isinstance(payload, dict) or payload.get("key") != key:
            raise ValueError("not this entry")
        rendered = FileRender(payload["render"], payload["error"], cached=True)
        if (rendered.render is None) == (rendered.error is None) or not (
            rendered.render is None or isinstance(rendered.render, Render)
        ):
            raise ValueError("malformed entry")
        return rendered
    except FileNotFoundError:
        return None
    except Exception as exc:  # corrupt, truncated, from another Python: rebuild it
        log.warning("jobforge render cache: ignoring unreadable %s (%s)", entry, exc)
        return None


def _write(directory: Path, entry: Path, key: str, rendered: FileRender) -> None:
    render = rendered.render
    if render is not None:  # names and specs pickled apart: see BatchRender.spec_data
        render = render.packed()
    payload = {"key": key, "render": render, "error": rendered.error}
    tmp = None
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private_dir(directory):
            log.warning(
                "jobforge render cache: %s is not private to this user; not caching", directory
            )
            return
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{entry.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, entry)
        tmp = None
        _prune(directory, entry)
    except Exception as exc:  # a cache that cannot be written only costs time
        log.warning("jobforge render cache: cannot write %s (%s)", entry, exc)
    finally:
        if tmp is not None:
            _unlink(Path(tmp))


def _prune(directory: Path, keep: Path) -> None:
    """Drop this config's older entries (one file per config and `job_tasks`, not one per
    edit) and temporary files a killed writer left an hour ago or more."""
    prefix = keep.name.split("-", 1)[0] + "-"
    stale_before = time.time() - 3600
    for old in directory.glob(f"{prefix}*{SUFFIX}"):
        if old.name != keep.name:
            _unlink(old)
    for tmp in directory.glob(f".{prefix}*.tmp"):
        try:
            if tmp.stat().st_mtime < stale_before:
                _unlink(tmp)
        except OSError:
            pass


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass  # a concurrent writer removed it first
