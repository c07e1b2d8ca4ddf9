"""Job configurations and pipelines of them: models, load/dump, validation, JADE import."""

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
from airflow_jobforge.config.pipeline import (
    Pipeline,
    PipelineStage,
    StageOptions,
    StageOverrides,
    apply_stage_overrides,
    dump_pipeline,
    import_jade_pipeline,
    is_pipeline_data,
    is_pipeline_file,
    load_pipeline,
    load_stage_config,
    parse_pipeline,
    resolve_config_file,
)
from airflow_jobforge.config.validation import ensure_valid, parse_configuration

__all__ = [
    "DEFAULT_GROUP",
    "BatchingParams",
    "ContainerParams",
    "Job",
    "JobConfiguration",
    "JobPostProcessConfig",
    "Pipeline",
    "PipelineStage",
    "SlurmParams",
    "StageOptions",
    "StageOverrides",
    "SubmissionGroup",
    "apply_stage_overrides",
    "dump_config",
    "dump_pipeline",
    "dumps_config",
    "ensure_valid",
    "import_jade_pipeline",
    "is_pipeline_data",
    "is_pipeline_file",
    "load_config",
    "load_pipeline",
    "load_stage_config",
    "parse_configuration",
    "parse_pipeline",
    "read_data",
    "resolve_config_file",
]
