from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_registry(tmp_path, monkeypatch):
    """Every test gets its own extension registry file, never the user's."""
    monkeypatch.setenv("JOBFORGE_REGISTRY", str(tmp_path / "registry.json"))
