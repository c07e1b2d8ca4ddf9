"""Extensions: what kinds of jobs jobforge knows how to run."""

from __future__ import annotations

from airflow_jobforge.extensions.registry import Extension, Registry

__all__ = ["Extension", "Registry"]
