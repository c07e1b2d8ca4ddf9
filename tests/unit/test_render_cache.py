"""The on-disk render cache: same DAG as without it, misses on any change, survives damage."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle

import pytest

from airflow_jobforge.dag import render_cache
from airflow_jobforge.dag.loading import load_dags
from airflow_jobforge.dag.render_cache import SUFFIX, render_file
from tests.airflow_versions import DagSerialization

CONFIG = {
    "jobs": [
        *({"name": f"j{i}", "command": f"echo {i}"} for i in range(120)),
        {"name": "last", "command": "true", "blocked_by": ["j0", "j119"]},
    ],
    "submission_groups": [{"name": "g", "batching": {"per_node_batch_size": 50}}],
    "setup_command": "echo setup",
    "job_post_process_config": {"module": "m", "class": "C", "data": {"k": 1}},
}


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv("JOBFORGE_CACHE_DIR", str(directory))
    return directory


def write_config(path, data=None):
    path.write_text(json.dumps(data or CONFIG))
    return path


def entries(directory):
    return sorted(directory.glob(f"*{SUFFIX}"))


def serialized(dag) -> str:
    data = DagSerialization.to_dict(dag)
    return json.dumps(data, sort_keys=True, default=str)


def test_a_cached_render_builds_the_same_dag_as_a_fresh_one(tmp_path, cache):
    write_config(tmp_path / "sims.json")
    pattern = tmp_path / "*.json"
    fresh = load_dags(pattern, {}, cache=False, output_dir="/tmp/o")["jobforge_sims"]
    assert not cache.exists()
    cold = load_dags(pattern, {}, output_dir="/tmp/o")["jobforge_sims"]
    assert len(entries(cache)) == 1
    assert render_file(str(tmp_path / "sims.json")).cached
    warm = load_dags(pattern, {}, output_dir="/tmp/o")["jobforge_sims"]
    assert serialized(fresh) == serialized(cold) == serialized(warm)
    assert len(warm.task_dict) == 3 * 3 + 1 + 121 + 1  # batches, summary, posts, setup


def test_a_cached_batch_spec_is_unpickled_only_when_read(tmp_path, cache):
    """A worker reads one batch's spec: the others stay bytes."""
    path = str(write_config(tmp_path / "sims.json"))
    fresh = render_file(path, use_cache=False).render
    render_file(path)
    warm = render_file(path)
    assert warm.cached
    first, *others = warm.render.batches
    assert all(isinstance(b.spec_data, bytes) for b in warm.render.batches)
    assert first.spec == fresh.batches[0].spec and isinstance(first.spec_data, dict)
    assert all(isinstance(b.spec_data, bytes) for b in others)
    assert warm.render == fresh


def test_editing_the_config_misses_the_cache_and_replaces_the_old_entry(tmp_path, cache):
    path = str(write_config(tmp_path / "sims.json"))
    assert len(render_file(path).render.jobs) == 121
    old = entries(cache)
    write_config(tmp_path / "sims.json", {"jobs": [{"name": "only", "command": "true"}]})
    rendered = render_file(path)
    assert not rendered.cached and rendered.render.jobs == ("only",)
    assert len(entries(cache)) == 1 and entries(cache) != old


def test_job_tasks_and_the_code_are_part_of_the_key(tmp_path, cache, monkeypatch):
    path = str(write_config(tmp_path / "sims.json"))
    render_file(path)
    assert not render_file(path, job_tasks=True).cached
    assert render_file(path, job_tasks=True).render.batches[0].job_docs is not None
    monkeypatch.setattr(render_cache, "_code_digest", "another jobforge")
    assert not render_file(path).cached


def test_a_broken_config_error_is_cached_too(tmp_path, cache):
    path = str(write_config(tmp_path / "bad.json", {"jobs": [{"name": "a", "command": "x"}] * 2}))
    first = render_file(path)
    second = render_file(path)
    assert first.render is None and "name used by 2 jobs" in first.error
    assert second.cached and second.error == first.error


@pytest.mark.parametrize(
    "damage",
    [b"", b"not a pickle", pickle.dumps({"key": "other", "render": None, "error": "x"})],
    ids=["empty", "garbage", "another key"],
)
def test_a_damaged_entry_is_ignored_and_rebuilt(tmp_path, cache, damage):
    path = str(write_config(tmp_path / "sims.json"))
    good = render_file(path).render
    (entry,) = entries(cache)
    entry.write_bytes(damage)
    rebuilt = render_file(path)
    assert not rebuilt.cached and rebuilt.render == good
    assert render_file(path).cached, "the rebuilt entry was written back"


def test_a_cache_directory_others_can_write_to_is_not_trusted(tmp_path, cache):
    path = str(write_config(tmp_path / "sims.json"))
    render_file(path)
    cache.chmod(0o777)
    try:
        assert not render_file(path).cached
    finally:
        cache.chmod(0o700)
    assert render_file(path).cached


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("JOBFORGE_CACHE_DIR", "off")
    path = str(write_config(tmp_path / "sims.json"))
    assert not render_file(path).cached and not render_file(path).cached


def test_the_cache_lives_under_airflow_home_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("JOBFORGE_CACHE_DIR", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert render_cache.cache_dir() == tmp_path / "jobforge-cache"


def _render_in_child(path: str, queue: multiprocessing.Queue) -> None:
    queue.put(len(render_file(path).render.jobs))


def test_processes_writing_the_same_entry_at_once_leave_one_whole_entry(tmp_path, cache):
    path = str(write_config(tmp_path / "sims.json"))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_render_in_child, args=(path, queue)) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0] * 4
    assert [queue.get(timeout=5) for _ in children] == [121] * 4
    assert len(entries(cache)) == 1 and not list(cache.glob(".*"))
    assert render_file(path).cached


def test_an_unreadable_config_is_a_broken_config_not_a_crash(tmp_path, cache):
    os.mkdir(tmp_path / "dir.json")
    rendered = render_file(str(tmp_path / "dir.json"))
    assert rendered.render is None and "dir.json" in rendered.error
