"""Pipelines of configs: an ordered list of stages, each a job configuration that is either a
file or written at run time by a generator command from the earlier stages' outputs.

The file is checked as a config is: every problem at once, static stages' configs included.
JADE pipeline files (`jade pipeline create`, JSON even under a `.toml` name) are imported on
load, with a note for each non-default value that does not carry over; a generator may write
a JADE config, which `load_stage_config` imports on the fly.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from airflow_jobforge.config.fields import check_group_name
from airflow_jobforge.config.io import SUFFIXES, dumps_data, read_data, write_data_file
from airflow_jobforge.config.jade import import_jade, submitter_params_fields
from airflow_jobforge.config.models import (
    DEFAULT_GROUP,
    FORMAT_VERSION,
    BatchingParams,
    JobConfiguration,
    SlurmParams,
    SubmissionGroup,
)
from airflow_jobforge.config.validation import check_relations, parse_configuration
from airflow_jobforge.errors import ConfigError, JobForgeError, Problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG_OUTPUT = "config.json"
# The run dir's own files: JADE's status file, and `output-stage<N>` links to the stage dirs
# that JADE auto-config scripts build paths from.
STATUS_FILE = "pipeline.json"
_JADE_STAGE_DIR = re.compile(r"output-stage[0-9]+")
# A pipeline is a few KB; reading more than this to tell a pipeline from a config is waste.
_MAX_PIPELINE_BYTES = 64 * 1024 * 1024
# Set on validation by `parse_pipeline`, which reports relations between stages itself.
_RELATIONS_CHECKED = "relations_checked_by_caller"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _partial(model: type[BaseModel], name: str, doc: str) -> type[_Frozen]:
    """`model` with every field optional (None: not overridden), keeping each field's checks
    and description, so the overrides stay in step with the group fields they override."""
    fields: dict[str, Any] = {}
    for key, info in model.model_fields.items():
        inner: Any = (
            Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        )
        fields[key] = (inner | None, Field(default=None, description=info.description))
    return create_model(name, __base__=_Frozen, __doc__=doc, **fields)  # type: ignore[call-overload]


SlurmOverrides = _partial(
    SlurmParams, "SlurmOverrides", "sbatch options set on every submission group of the stage."
)
BatchingOverrides = _partial(
    BatchingParams, "BatchingOverrides", "Batching set on every submission group of the stage."
)


def _given(model: BaseModel) -> dict[str, Any]:
    return {key: value for key, value in model if value is not None}


class StageOverrides(_Frozen):
    """Submission group fields the stage sets on every group of its config (JADE's
    `submitter_params`); unset fields keep the config's values."""

    slurm: SlurmOverrides = Field(  # type: ignore[valid-type]
        default_factory=SlurmOverrides, description="sbatch options (fields of slurm)"
    )
    batching: BatchingOverrides = Field(  # type: ignore[valid-type]
        default_factory=BatchingOverrides, description="Batching (fields of batching)"
    )
    max_concurrent_batches: int | None = Field(
        default=None, ge=1, description="At most this many batches of each group queued at once"
    )

    def is_empty(self) -> bool:
        return not (_given(self.slurm) or _given(self.batching) or self.max_concurrent_batches)

    def describe(self) -> str:
        """`slurm.account=x batching.per_node_batch_size=7 ...`, for tables."""
        items = [f"slurm.{k}={_as_text(v)}" for k, v in _given(self.slurm).items()]
        items += [f"batching.{k}={_as_text(v)}" for k, v in _given(self.batching).items()]
        if self.max_concurrent_batches is not None:
            items.append(f"max_concurrent_batches={self.max_concurrent_batches}")
        return " ".join(items)


class StageOptions(_Frozen):
    """How the stage's tasks run: these DAG options replace the pipeline DAG's."""

    workdir: str | None = Field(
        default=None, description="Working directory of the batches on the nodes (--chdir)"
    )
    python: str | None = Field(
        default=None, description="Interpreter on the compute nodes that imports airflow_jobforge"
    )
    pythonpath: str | None = Field(default=None, description="PYTHONPATH on the compute nodes")
    poll_interval: float | None = Field(
        default=None, gt=0, description="Seconds between status queries of the wait tasks"
    )
    node_failure_retries: int | None = Field(
        default=None, ge=0, description="Resubmissions of a batch after NODE_FAIL/BOOT_FAIL"
    )
    job_tasks: bool | None = Field(
        default=None, description="One task per job; None: the pipeline DAG's choice"
    )

    def given(self) -> dict[str, Any]:
        """The options set here, named as `DagOptions` fields: `replace(options, **given)`."""
        return _given(self)


# What a run dir holds besides the stages' dirs (`rundir/`): a stage of that name would make
# the pipeline's run dir look like a plain run, or overwrite it.
RESERVED_STAGE_NAMES = frozenset(
    ("results", "batches", "events", "slurm", "job-output", "samples", "spark", "claims")
)


def check_stage_name(value: str) -> str:
    try:
        check_group_name(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a valid stage name: use 1-100 of A-Z a-z 0-9 _ - (it becomes an "
            "Airflow TaskGroup id and a directory name)"
        ) from None
    if _JADE_STAGE_DIR.fullmatch(value):
        raise ValueError(
            f"{value!r} is reserved: the run dir links JADE's output-stage<N> names to stages"
        )
    if value in RESERVED_STAGE_NAMES:
        raise ValueError(f"{value!r} is reserved: a run dir holds a {value!r} entry of its own")
    return value


def _check_text(value: str | None) -> str | None:
    if value is not None:
        if not value.strip():
            raise ValueError("is empty")
        if "\x00" in value:
            raise ValueError("contains a NUL byte")
    return value


def check_config_output(value: str | None) -> str | None:
    if value is None:
        return value
    _check_text(value)
    if posixpath.isabs(value) or value.startswith("~"):
        raise ValueError(f"{value!r} must be relative to the pipeline run dir")
    parts = value.split("/")
    if ".." in parts:
        raise ValueError(f"{value!r} must not contain '..': it stays inside the pipeline run dir")
    if not value.lower().endswith(SUFFIXES):
        raise ValueError(f"{value!r} must end in .json or .toml")
    if posixpath.normpath(value) == STATUS_FILE:
        raise ValueError(f"{value!r} is the pipeline's status file in the run dir")
    return value


StageName = Annotated[str, AfterValidator(check_stage_name)]


class PipelineStage(_Frozen):
    """One stage: a config file, or a command that writes the config when the stage starts."""

    name: StageName = Field(
        description="Unique; 1-100 of A-Z a-z 0-9 _ - (an Airflow TaskGroup id and the "
        "stage's directory in the run dir); not output-stage<N>"
    )
    config_file: str | None = Field(
        default=None,
        description="The stage's job configuration; a relative path is relative to the "
        "pipeline file's directory. Exactly one of config_file and command",
    )
    command: str | None = Field(
        default=None,
        description="Generator: run by bash in command_dir when the stage starts, "
        "it writes the stage's config (our format or JADE's) to config_output",
    )
    command_dir: Literal["run", "pipeline"] = Field(
        default="run",
        description="Where command runs: 'run' (the pipeline run dir) or 'pipeline' (the "
        "pipeline file's directory, as JADE runs auto-config commands: relative script paths "
        "then work)",
    )
    config_output: str | None = Field(
        default=None,
        description="Where command writes the config, relative to command_dir "
        "(.json or .toml, no '..'); default <stage name>/config.json in the pipeline run dir",
    )
    overrides: StageOverrides = Field(
        default_factory=StageOverrides,
        description="Submission group fields set on every group of the stage's config",
    )
    options: StageOptions = Field(
        default_factory=StageOptions, description="DAG options of this stage's tasks"
    )
    on_failure: Literal["stop", "continue"] = Field(
        default="stop",
        description="When a job of this stage fails: 'stop' (the later stages do not run) or "
        "'continue' (they run anyway)",
    )

    @field_validator("config_file", "command")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        return _check_text(value)

    @field_validator("config_output")
    @classmethod
    def _inside_run_dir(cls, value: str | None) -> str | None:
        return check_config_output(value)

    @model_validator(mode="after")
    def _one_source(self) -> PipelineStage:
        if (self.config_file is None) == (self.command is None):
            got = "both" if self.config_file is not None else "neither"
            raise ValueError(f"give exactly one of config_file and command (got {got})")
        if self.config_output is not None and self.command is None:
            raise ValueError("config_output is only for a stage with a command")
        return self

    @property
    def is_generated(self) -> bool:
        return self.command is not None

    @property
    def config_output_path(self) -> str:
        """Where the generator writes, relative to the pipeline run dir."""
        return self.config_output or posixpath.join(self.name, DEFAULT_CONFIG_OUTPUT)


class Pipeline(_Frozen):
    """Stages run in order; each starts when the one before it has ended."""

    format_version: str = Field(
        default=FORMAT_VERSION, description="Format of the file; major version 1"
    )
    description: str | None = Field(default=None, description="Free text")
    stages: list[PipelineStage] = Field(min_length=1, description="The stages, in order")

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value.split(".")[0] != "1":
            raise ValueError(f"unsupported format version {value!r}")
        return value

    @model_validator(mode="after")
    def _relations(self, info: ValidationInfo) -> Pipeline:
        if not (info.context or {}).get(_RELATIONS_CHECKED):
            problems = stage_relation_problems([s.model_dump() for s in self.stages])
            if problems:
                raise ValueError("; ".join(map(str, problems)))
        return self

    def stage(self, name: str) -> PipelineStage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise JobForgeError(f"no pipeline stage named {name!r}")

    def stage_number(self, name: str) -> int:
        """1-based, as JADE numbers stages (`JADE_PIPELINE_STAGE_ID`, `output-stage<N>`)."""
        for number, stage in enumerate(self.stages, 1):
            if stage.name == name:
                return number
        raise JobForgeError(f"no pipeline stage named {name!r}")


def pipeline_json_schema() -> dict[str, Any]:
    schema = Pipeline.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "airflow-jobforge pipeline"
    return schema


# --- parsing -----------------------------------------------------------------------------


def stage_relation_problems(stages: list[Any]) -> list[Problem]:
    """Problems between stages of raw data: repeated names and generated configs that would
    overwrite each other."""
    problems: list[Problem] = []
    names = [s.get("name") for s in stages if isinstance(s, dict)]
    for name, n in Counter(n for n in names if isinstance(n, str)).items():
        if n > 1:
            problems.append(Problem(f"stage {name!r}", f"name used by {n} stages"))
    outputs: dict[str, list[str]] = {}
    for i, stage in enumerate(stages, 1):
        if not isinstance(stage, dict) or not isinstance(stage.get("command"), str):
            continue
        name = stage.get("name")
        output = stage.get("config_output")
        if output is None and isinstance(name, str):
            output = posixpath.join(name, DEFAULT_CONFIG_OUTPUT)
        if isinstance(output, str):
            outputs.setdefault(posixpath.normpath(output), []).append(_label(name, i))
    for output, users in outputs.items():
        if len(users) > 1:
            problems.append(
                Problem(users[0], f"config_output {output!r} is also written by {users[1]}")
            )
    return problems


def parse_pipeline(
    data: Any,
    *,
    file: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    check_configs: bool = True,
) -> Pipeline:
    """Validate raw pipeline data; raise ConfigError listing every problem.

    With `check_configs`, each static stage's config is loaded (relative to `base_dir`,
    default the directory of `file`, else the working directory) and the stage's overrides
    applied to it, so a config that cannot run is reported with the pipeline.
    """
    pipeline, _ = _parse(data, file=file, base_dir=base_dir, check_configs=check_configs)
    return pipeline


def _parse(
    data: Any,
    *,
    file: str | None,
    base_dir: str | os.PathLike[str] | None,
    check_configs: bool,
) -> tuple[Pipeline, list[str]]:
    if not isinstance(data, dict):
        raise ConfigError([Problem("", "the top level must be an object/table")], file=file)
    if is_jade_pipeline_data(data):
        raise ConfigError(
            [
                Problem(
                    "",
                    "this is a JADE pipeline; load it with load_pipeline or convert it "
                    "with 'jobforge pipeline import-jade'",
                )
            ],
            file=file,
        )
    if not is_pipeline_data(data):
        what = "a job configuration" if "jobs" in data else "not a pipeline"
        raise ConfigError([Problem("", f"{what}: a pipeline has a 'stages' list")], file=file)
    problems: list[Problem] = []
    pipeline: Pipeline | None = None
    try:
        pipeline = Pipeline.model_validate(data, context={_RELATIONS_CHECKED: True})
    except ValidationError as exc:
        problems.extend(_describe(exc, data))
    raw_stages = data["stages"]
    problems.extend(stage_relation_problems(raw_stages))
    notes: list[str] = []
    if check_configs:
        base = Path(base_dir) if base_dir is not None else _base_dir(file)
        for i, raw in enumerate(raw_stages, 1):
            problems.extend(_check_static_stage(raw, i, base, notes))
    if problems:
        raise ConfigError(problems, file=file)
    assert pipeline is not None
    return pipeline, notes


def _base_dir(file: str | os.PathLike[str] | None) -> Path:
    return Path(os.path.dirname(os.path.abspath(file))) if file else Path.cwd()


def _label(name: Any, number: int) -> str:
    return f"stage {name!r}" if isinstance(name, str) else f"stage {number}"


def _check_static_stage(raw: Any, number: int, base: Path, notes: list[str]) -> list[Problem]:
    """The stage's config, loaded and overridden as its run will do it."""
    if not isinstance(raw, dict) or not isinstance(raw.get("config_file"), str):
        return []
    label = _label(raw.get("name"), number)
    path = base / raw["config_file"]
    if not path.is_file():
        return [Problem(label, f"config file {str(path)!r} does not exist")]
    try:
        config, config_notes = _load_stage_config(path, label)
    except ConfigError as exc:
        return exc.problems
    except JobForgeError as exc:
        return [Problem(label, exc.one_line())]
    notes.extend(f"{label}: {path}: {note}" for note in config_notes)
    try:
        overrides = StageOverrides.model_validate(raw.get("overrides") or {})
    except ValidationError:
        return []  # reported already; broken overrides cannot be applied
    try:
        _apply(config, overrides, f"{label}: config {path}", str(path))
    except ConfigError as exc:
        return exc.problems
    return []


def _describe(exc: ValidationError, data: dict[str, Any]) -> list[Problem]:
    """pydantic errors as problems naming the stage by name, not by list index."""
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown field {str(loc[-1])!r}"
            loc = loc[:-1]
        elif err["type"] == "missing":
            msg = f"missing required field {str(loc[-1])!r}"
            loc = loc[:-1]
        problems.append(Problem(_where(loc, data), msg))
    return problems


def _where(loc: list[Any], data: dict[str, Any]) -> str:
    if len(loc) >= 2 and loc[0] == "stages" and isinstance(loc[1], int):
        stages = data.get("stages")
        item = stages[loc[1]] if isinstance(stages, list) and loc[1] < len(stages) else None
        label = _label(item.get("name") if isinstance(item, dict) else None, loc[1] + 1)
        rest = ".".join(str(x) for x in loc[2:])
        return f"{label}: {rest}" if rest else label
    return ".".join(str(x) for x in loc)


# --- files ---------------------------------------------------------------------------------


def read_pipeline_data(path: str | os.PathLike[str]) -> Any:
    """JSON under any name (JADE writes JSON to `pipeline.toml`), else TOML for `.toml`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise JobForgeError(f"cannot read: {exc.strerror}", file=str(path)) from None
    data = _json_or_none(raw)
    if data is not None:
        return data
    if path.suffix.lower() in SUFFIXES:
        return read_data(path)  # its syntax errors, in the format the name says
    raise JobForgeError(
        f"unsupported file type {path.suffix.lower()!r}: not JSON; use .json or .toml",
        file=str(path),
    )


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None


def is_pipeline_data(data: Any) -> bool:
    """A pipeline has a `stages` list and no `jobs` (a config has `jobs`); JADE's too."""
    return isinstance(data, dict) and isinstance(data.get("stages"), list) and "jobs" not in data


def is_pipeline_file(path: str | os.PathLike[str]) -> bool:
    """Whether `path` holds a pipeline (ours or JADE's); False when it cannot be read. Cheap:
    a file without the word `stages` is not parsed."""
    try:
        path = Path(path)
        if path.stat().st_size > _MAX_PIPELINE_BYTES:
            return False
        raw = path.read_bytes()
        if b"stages" not in raw:
            return False
        data = _json_or_none(raw)
        if data is None and path.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        return is_pipeline_data(data)
    except Exception:  # any unreadable or malformed file is simply not a pipeline
        return False


def load_pipeline(
    path: str | os.PathLike[str], *, check_configs: bool = True
) -> tuple[Pipeline, list[str]]:
    """Read and fully validate a pipeline file, ours or JADE's.

    Returns the pipeline and notes on what a JADE import (of the pipeline or of a static
    stage's JADE config) did not carry over.
    """
    data = read_pipeline_data(path)
    if is_jade_pipeline_data(data):
        return import_jade_pipeline(data, file=str(path), check_configs=check_configs)
    return _parse(data, file=str(path), base_dir=None, check_configs=check_configs)


def pipeline_to_data(pipeline: Pipeline) -> dict[str, Any]:
    """Plain data for dumping: fields at their defaults are left out, the version kept."""
    data = pipeline.model_dump(mode="json", exclude_defaults=True)
    return {"format_version": pipeline.format_version, **data}


def dumps_pipeline(pipeline: Pipeline, fmt: str = ".json") -> str:
    return dumps_data(pipeline_to_data(pipeline), fmt)


def dump_pipeline(pipeline: Pipeline, path: str | os.PathLike[str]) -> None:
    """Write atomically (temp file + rename), JSON or TOML by the suffix."""
    write_data_file(path, lambda suffix: dumps_pipeline(pipeline, suffix))


def resolve_config_file(pipeline_path: str | os.PathLike[str], stage: PipelineStage) -> str:
    """Absolute path of a static stage's config: relative to the pipeline file's directory."""
    if stage.config_file is None:
        raise JobForgeError(f"stage {stage.name!r} has no config_file: its command writes it")
    base = os.path.dirname(os.path.abspath(pipeline_path))
    return os.path.normpath(os.path.join(base, stage.config_file))


def rebase_config_files(
    pipeline: Pipeline, old_dir: str | os.PathLike[str], new_dir: str | os.PathLike[str]
) -> Pipeline:
    """The pipeline with its static config paths (relative to `old_dir`) made relative to
    `new_dir` where the config lies below it, else absolute: for writing it elsewhere."""
    new_dir = os.path.abspath(new_dir)
    stages = []
    for stage in pipeline.stages:
        if stage.config_file is not None:
            target = os.path.normpath(os.path.join(os.path.abspath(old_dir), stage.config_file))
            relative = os.path.relpath(target, new_dir)
            inside = relative != ".." and not relative.startswith(".." + os.sep)
            stage = stage.model_copy(update={"config_file": relative if inside else target})
        stages.append(stage)
    return pipeline.model_copy(update={"stages": stages})


# --- stage configs -------------------------------------------------------------------------


def is_jade_config_data(data: Any) -> bool:
    """What `jade config create` writes: its class names, or JADE's job ids."""
    if not isinstance(data, dict):
        return False
    if "configuration_class" in data or "configuration_module" in data:
        return True
    jobs = data.get("jobs")
    return isinstance(jobs, list) and any(isinstance(j, dict) and "job_id" in j for j in jobs)


def is_jade_config_file(path: str | os.PathLike[str]) -> bool:
    """Cheap and never raising: JADE's class names or job ids within the file's first 64 KiB
    (what `is_jade_config_data` looks for, without parsing a big config)."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return False
    return any(
        key in head for key in (b'"configuration_class"', b'"configuration_module"', b'"job_id"')
    )


def load_stage_config(
    path: str | os.PathLike[str], *, stage: str
) -> tuple[JobConfiguration, list[str]]:
    """A stage's config, ours or JADE's (imported on the fly: JADE auto-config scripts write
    JADE configs), with notes on what the import did not carry over. Errors name the stage."""
    return _load_stage_config(Path(path), f"stage {stage!r}")


def _load_stage_config(path: Path, label: str) -> tuple[JobConfiguration, list[str]]:
    where = f"{label}: config {path}"
    try:
        data = read_pipeline_data(path)
        if is_jade_config_data(data):
            return import_jade(data, file=str(path))
        return parse_configuration(data, file=str(path)), []
    except ConfigError as exc:
        raise ConfigError(_prefixed(exc.problems, where), file=exc.file) from None
    except JobForgeError as exc:
        raise JobForgeError(f"{label}: {exc.reason}", file=exc.file) from None


def _prefixed(problems: list[Problem], where: str) -> list[Problem]:
    return [Problem(f"{where}: {p.where}" if p.where else where, p.reason) for p in problems]


def apply_stage_overrides(
    config: JobConfiguration,
    overrides: StageOverrides,
    *,
    stage: str | None = None,
    file: str | None = None,
) -> JobConfiguration:
    """`config` with the overridden fields set on every submission group (a config without
    groups gets the default one), checked again: a shorter walltime may not fit the jobs."""
    label = f"stage {stage!r}" if stage else "stage"
    return _apply(config, overrides, label, file)


def _apply(
    config: JobConfiguration, overrides: StageOverrides, label: str, file: str | None
) -> JobConfiguration:
    if overrides.is_empty():
        return config
    slurm, batching = _given(overrides.slurm), _given(overrides.batching)
    groups = list(config.submission_groups) or [SubmissionGroup(name=DEFAULT_GROUP)]
    problems: list[Problem] = []
    new_groups = []
    for group in groups:
        data = group.model_dump(by_alias=True)
        data["slurm"].update(slurm)
        data["batching"].update(batching)
        if overrides.max_concurrent_batches is not None:
            data["max_concurrent_batches"] = overrides.max_concurrent_batches
        try:
            new_groups.append(SubmissionGroup.model_validate(data))
        except ValidationError as exc:
            for err in exc.errors():
                rest = ".".join(str(x) for x in err["loc"])
                where = f"{label}: overrides of group {group.name!r}"
                where += f": {rest}" if rest else ""
                problems.append(Problem(where, err["msg"].removeprefix("Value error, ")))
    if problems:
        raise ConfigError(problems, file=file)
    jobs = config.jobs
    if not config.submission_groups:
        jobs = [
            j if j.submission_group else j.model_copy(update={"submission_group": DEFAULT_GROUP})
            for j in jobs
        ]
    new = config.model_copy(update={"submission_groups": new_groups, "jobs": jobs})
    problems = check_relations(new)
    if problems:
        where = f"{label} with the stage's overrides"
        raise ConfigError(_prefixed(problems, where), file=file)
    return new


# --- JADE pipelines ------------------------------------------------------------------------

# JADE pipeline run state: meaningless in a file to be run again.
_JADE_TOP_DEFAULTS: dict[str, Any] = {"path": None, "stage_num": 1, "is_complete": False}
_JADE_STAGE_KEYS = {
    "auto_config_cmd",
    "config_file",
    "stage_num",
    "path",
    "return_code",
    "submitter_params",
}
# Values `jade pipeline create` writes whatever the user asked for, equal to ours: as
# overrides they would only hide the stage config's own settings.
_JADE_DEFAULT_OVERRIDES: dict[str, dict[str, Any]] = {
    "slurm": {"nodes": 1, "walltime": SlurmParams().walltime},
    "batching": {
        "per_node_batch_size": BatchingParams().per_node_batch_size,
        "try_add_blocked_jobs": True,
        "time_based_batching": False,
    },
}


def is_jade_pipeline_data(data: Any) -> bool:
    """What `jade pipeline create` writes: JADE's stage numbers and submitter params."""
    if not isinstance(data, dict):
        return False
    if "stage_num" in data or "is_complete" in data:
        return True
    stages = data.get("stages")
    return isinstance(stages, list) and any(
        isinstance(s, dict) and ("submitter_params" in s or "stage_num" in s) for s in stages
    )


def import_jade_pipeline(
    data: Any,
    *,
    file: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    check_configs: bool = True,
) -> tuple[Pipeline, list[str]]:
    """A JADE pipeline (nrel-jade 0.12 `PipelineConfig`) as ours, with notes on what did not
    carry over.

    Stage N is named `stageN`; an `auto_config_cmd` becomes the command, writing JADE's
    `config_file` (relative to the run dir, where JADE ran it too). JADE runs the next stage
    whatever the previous one's return code, so every stage gets `on_failure = "continue"`.
    """
    if not is_jade_pipeline_data(data) or not isinstance(data.get("stages"), list):
        raise ConfigError(
            [
                Problem(
                    "", "not a JADE pipeline (no 'stages' list with stage_num, submitter_params)"
                )
            ],
            file=file,
        )
    notes: list[str] = []
    for key, default in _JADE_TOP_DEFAULTS.items():
        if data.get(key, default) != default:
            notes.append(f"top-level {key} = {data[key]!r} (JADE's run state) is not carried over")
    for key in set(data) - set(_JADE_TOP_DEFAULTS) - {"stages"}:
        if data[key] is not None:
            notes.append(f"top-level {key!r} = {data[key]!r} is not carried over")
    stages = [_jade_stage(raw, number, notes) for number, raw in enumerate(data["stages"], 1)]
    if any(isinstance(s, dict) and "overrides" in s for s in stages):
        notes.append(
            "submitter_params become overrides of every submission group of the stage's config; "
            "JADE applied them only to a config without submission groups"
        )
    pipeline, config_notes = _parse(
        {"format_version": FORMAT_VERSION, "stages": stages},
        file=file,
        base_dir=base_dir,
        check_configs=check_configs,
    )
    return pipeline, notes + config_notes


def _jade_stage(raw: Any, number: int, notes: list[str]) -> Any:
    if not isinstance(raw, dict):
        return raw
    name = f"stage{number}"
    where = f"stage {name!r}"
    if raw.get("stage_num", number) != number:
        notes.append(
            f"{where}: stage_num {raw['stage_num']!r} differs from its position {number}; "
            "stages run in file order and are named by it"
        )
    for key in ("path", "return_code"):
        if raw.get(key) is not None:
            notes.append(f"{where}: {key} = {raw[key]!r} (JADE's run state) is not carried over")
    for key in set(raw) - _JADE_STAGE_KEYS:
        if raw[key] is not None:
            notes.append(f"{where}: field {key!r} is not carried over")
    stage: dict[str, Any] = {"name": name, "on_failure": "continue"}
    if raw.get("auto_config_cmd") is not None:
        stage["command"] = raw["auto_config_cmd"]
        stage["command_dir"] = "pipeline"  # JADE runs it where it was started
        if raw.get("config_file") is not None:
            stage["config_output"] = raw["config_file"]
    else:
        stage["config_file"] = raw.get("config_file")
    params = raw.get("submitter_params")
    fields = submitter_params_fields(params if isinstance(params, dict) else {}, where, notes)
    container = fields.pop("container", None)
    if container:
        notes.append(
            f"{where}: singularity_params (container {container['image']!r}) is not carried "
            "over: set container in the submission groups of the stage's config"
        )
    overrides: dict[str, Any] = {}
    for section in ("slurm", "batching"):
        defaults = _JADE_DEFAULT_OVERRIDES[section]
        given = {k: v for k, v in fields[section].items() if defaults.get(k, object()) != v}
        if given:
            overrides[section] = given
    if fields.get("max_concurrent_batches") is not None:
        overrides["max_concurrent_batches"] = fields["max_concurrent_batches"]
    if overrides:
        stage["overrides"] = overrides
    return stage


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)
