"""Job configuration: models, load/dump, validation, JADE import."""

from __future__ import annotations

from airflow_jobforge.config.io import dump_config, dumps_config, load_config, read_data
from airflow_jobforge.config.models import (
    DEFAULT_GROUP,
    BatchingParams,
    ContainerParams,
    Job,
    JobConfiguration,
    JobPostProcessConfig,
    SlurmParams,
    SubmissionGroup,
)
from airflow_jobforge.config.validation import ensure_valid, parse_configuration

__all__ = [
    "DEFAULT_GROUP",
    "BatchingParams",
    "ContainerParams",
    "Job",
    "JobConfiguration",
    "JobPostProcessConfig",
    "SlurmParams",
    "SubmissionGroup",
    "dump_config",
    "dumps_config",
    "ensure_valid",
    "load_config",
    "parse_configuration",
    "read_data",
]
