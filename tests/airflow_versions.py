"""Airflow names the tests use that moved between the supported minors (3.1 to 3.3).

The package's own moved names live in `airflow_jobforge.airflow_compat`; these are the ones
only tests touch (`make oldest` runs the unit tests against Airflow 3.1).
"""

from __future__ import annotations

import inspect
from pathlib import Path

try:  # Airflow >= 3.2
    from airflow.serialization.serialized_objects import DagSerialization
except ImportError:  # Airflow 3.1
    from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization

try:  # Airflow >= 3.2
    from airflow.dag_processing.dagbag import BundleDagBag, DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import BundleDagBag, DagBag

__all__ = ["DagSerialization", "bundle_dag_bag"]


def bundle_dag_bag(dag_folder: Path, bundle_path: Path, bundle_name: str) -> BundleDagBag:
    """The DagBag the dag-processor fills from a bundle's file (3.1's takes no bundle name)."""
    named = "bundle_name" in inspect.signature(DagBag.__init__).parameters
    extra = {"bundle_name": bundle_name} if named else {}
    return BundleDagBag(dag_folder=dag_folder, bundle_path=bundle_path, **extra)
