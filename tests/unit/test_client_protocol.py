"""Every client the operators, sensors and triggers may be handed answers the Protocol they
are typed with: the same methods, parameters and defaults (runtime_checkable alone only
checks that the names exist)."""

from __future__ import annotations

import inspect

import pytest

from airflow_jobforge.local.backend import AsyncLocalClient, LocalClient
from airflow_jobforge.slurm.client import AsyncSlurmClient, SlurmClient
from airflow_jobforge.slurm.protocol import AsyncBatchClient, BatchClient


def protocol_methods(protocol: type) -> list[str]:
    return [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]


def parameters(function) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(
    ("implementation", "protocol"),
    [
        (SlurmClient, BatchClient),
        (LocalClient, BatchClient),
        (AsyncSlurmClient, AsyncBatchClient),
        (AsyncLocalClient, AsyncBatchClient),
    ],
)
def test_each_client_has_the_protocols_methods_with_the_same_signatures(implementation, protocol):
    methods = protocol_methods(protocol)
    assert "submit" in methods and "close" in methods
    for name in methods:
        ours, theirs = getattr(protocol, name), getattr(implementation, name)
        assert parameters(theirs) == parameters(ours), f"{implementation.__name__}.{name}"
        assert inspect.iscoroutinefunction(theirs) == inspect.iscoroutinefunction(ours), name


def test_a_local_client_is_a_batch_client_at_run_time(tmp_path):
    assert isinstance(LocalClient(tmp_path), BatchClient)
    assert not isinstance(object(), BatchClient)
