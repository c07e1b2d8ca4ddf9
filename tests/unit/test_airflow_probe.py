"""scripts/airflow/probe.py, the start script's readiness wait: the parts that read no API."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[2] / "scripts" / "airflow" / "probe.py"
_spec = importlib.util.spec_from_file_location("jobforge_airflow_probe", PROBE)
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def test_second_instances_run_their_roles_command():
    assert probe.role("scheduler-2") == "scheduler"
    assert probe.role("triggerer-2") == "triggerer"
    assert probe.role("worker-1") == "worker"
    assert probe.role("dag-processor") == "dag-processor"
    assert probe.role("api-server") == "api-server"


def test_a_celery_worker_is_ready_only_after_its_own_last_start(tmp_path):
    log = tmp_path / "worker-1.log"
    log.write_text(
        "===== 2026-01-01T00:00:00 start.sh: starting worker-1\n"
        "[INFO/MainProcess] worker-1@host ready.\n"
        "===== 2026-01-01T00:10:00 start.sh: starting worker-1\n"
        "[INFO/MainProcess] Connected to redis://127.0.0.1:6379/0\n"
    )
    with pytest.raises(probe.NotReadyAt) as err:
        probe.wait_workers(str(tmp_path), ["api-server", "worker-1"])
    assert err.value.component == "worker-1"
    with log.open("a") as handle:
        handle.write("[INFO/MainProcess] worker-1@host ready.\n")
    probe.wait_workers(str(tmp_path), ["api-server", "worker-1"])


def test_a_retitled_celery_worker_is_recognised_and_a_recycled_pid_is_not():
    celeryd = "[celeryd: worker-1@host:MainProcess] -active- (celery worker --celery-hostname"
    assert probe.runs(celeryd + " worker-1@%h)", "worker-1")
    assert not probe.runs(celeryd + " worker-1@%h)", "worker-2")
    started = "/opt/venv/bin/python /opt/venv/bin/airflow celery worker --celery-hostname"
    assert probe.runs(started + " worker-2@%h --without-gossip", "worker-2")
    assert probe.runs("/opt/venv/bin/python /opt/venv/bin/airflow scheduler", "scheduler-2")
    assert probe.runs("airflow api_server -- host:127.0.0.1 port:8080", "api-server")
    assert not probe.runs("sleep 100", "scheduler")
