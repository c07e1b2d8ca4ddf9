"""SubmissionGroup SLURM params + a batch -> sbatch argv and script.

sbatch options travel as argv (never through #SBATCH lines or a shell), every value
re-validated here; the script body quotes every interpolated value. The batch file travels
inside the script as a quoted heredoc, so a submission is one `sbatch` call with the script
on stdin: nothing to copy to the cluster first, and a retried submission is the same script.

A full or read-only output dir is said at once, not discovered by a timeout: a batch file
that cannot be written ends the batch with EXIT_OUTPUT_UNWRITABLE, and an exit-code file that
cannot be written is reported on stderr with its path and the error and, where the submitter
named one in JOBFORGE_EXIT_FALLBACK_DIR (the local backend does), written there instead, with
the reason on its second line.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from airflow_jobforge.config.models import ContainerParams, SlurmParams
from airflow_jobforge.containers import runner_prefix
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.rundir import EXIT_OUTPUT_UNWRITABLE
from airflow_jobforge.rundir.batches import BatchSpec

_TAG = re.compile(r"[A-Za-z0-9_.-]{1,200}")
JOB_NAME_PREFIX = "jf-"
COMMENT_PREFIX = "jobforge:"
HEREDOC = "JOBFORGE_BATCH_EOF"
FALLBACK_ENV = "JOBFORGE_EXIT_FALLBACK_DIR"
# The allocation's hosts, comma-separated, for the jobs (JADE hands its jobs the node list):
# a multi-node job's command reads them from JOBFORGE_NODE_NAMES or runs `srun` across them.
# `scontrol show hostnames` expands a compressed list (n[1-2]) locally, and runs only when
# the list has more than one host: a one-node allocation's list is its node's name.
NODE_NAMES = """case ${SLURM_JOB_NODELIST:-} in
'') ;;
*[[,]*) JOBFORGE_NODE_NAMES=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | paste -sd, -)
export JOBFORGE_NODE_NAMES ;;
*) export JOBFORGE_NODE_NAMES="$SLURM_JOB_NODELIST" ;;
esac
"""
# When the allocation ends, for the runner's walltime awareness (node.walltime): the script
# starts with the allocation, and SLURM before 23.02 does not say (SLURM_JOB_END_TIME). The
# local backend has no walltime: no SLURM_JOB_ID, no end.
ALLOCATION_END = """if [ -n "${{SLURM_JOB_ID:-}}" ]; then
export JOBFORGE_WALLTIME_S={walltime_s}
export JOBFORGE_END_TIME=$(( ${{EPOCHSECONDS:-$(date +%s)}} + {walltime_s} ))
fi
"""


@dataclass(frozen=True)
class SubmitRequest:
    """One batch to submit. `tag` is unique per (DAG run, batch, attempt): the adoption key."""

    tag: str
    batch: BatchSpec
    slurm: SlurmParams
    output_dir: str
    container: ContainerParams | None = None
    python: str = "python3"
    pythonpath: str | None = None
    workdir: str | None = None
    array: bool = False
    """One SLURM job array: task I runs job I of the batch alone, in its own allocation."""
    array_throttle: int | None = None
    """At most this many of the array's tasks at once (`--array=0-N%K`)."""


@dataclass(frozen=True)
class SbatchJob:
    argv: list[str]
    script: str
    job_name: str
    slurm_dir: str
    batch_file: str = ""
    batch_json: str = ""
    """The batch file the script writes when it starts; a batch that shares work has it
    written before sbatch too, so that other batches' runners see it while it is pending."""

    def stdout_path(self, job_id: str) -> str:
        return f"{self.slurm_dir}/{self.job_name}-{job_id}.out"

    def stderr_path(self, job_id: str) -> str:
        return f"{self.slurm_dir}/{self.job_name}-{job_id}.err"

    def exit_file(self, job_id: str) -> str:
        return exit_file_path(self.slurm_dir, self.job_name, job_id)


def exit_file_path(slurm_dir: str, job_name: str, job_id: str) -> str:
    return f"{slurm_dir}/{job_name}-{job_id}.exit"


def fallback_exit_file(fallback_dir: str, exit_file: str) -> str:
    """Where the script writes an exit file that its own place could not take."""
    return f"{fallback_dir.rstrip('/')}/{PurePosixPath(exit_file).name}"


def check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise JobForgeError(f"submission tag {tag!r} must be 1-200 of A-Z a-z 0-9 _ . -")
    return tag


def job_name_for(tag: str) -> str:
    return JOB_NAME_PREFIX + check_tag(tag)


def check_remote_path(path: str, what: str) -> str:
    if not PurePosixPath(path).is_absolute() or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise JobForgeError(f"{what} {path!r} must be an absolute path without control characters")
    return path


def sbatch_options(slurm: SlurmParams) -> list[str]:
    """Re-validated sbatch options, one argv element each."""
    slurm = SlurmParams.model_validate(slurm.model_dump())
    options = []
    pairs = (
        ("--account", slurm.account),
        ("--partition", slurm.partition),
        ("--qos", slurm.qos),
        ("--reservation", slurm.reservation),
        ("--time", slurm.walltime),
        ("--nodes", slurm.nodes),
        ("--ntasks", slurm.ntasks),
        ("--ntasks-per-node", slurm.ntasks_per_node),
        ("--cpus-per-task", slurm.cpus_per_task),
        ("--mem", slurm.mem),
        ("--tmp", slurm.tmp),
        ("--gres", slurm.gres),
        ("--constraint", slurm.constraint),
    )
    for flag, value in pairs:
        if value is not None:
            options.append(f"{flag}={value}")
    options.extend(slurm.extra)
    return options


# Shell variables of the script; every other word of the runner command is quoted.
# `$array_index` expands to `--array-index I` in an array task, to nothing elsewhere (the
# local backend runs an array's script once, for all its jobs).
_VARIABLES = {
    "$batch_file": '"$batch_file"',
    "$out": '"$out"',
    "$array_index": '${SLURM_ARRAY_TASK_ID:+--array-index "$SLURM_ARRAY_TASK_ID"}',
}


def array_option(request: SubmitRequest) -> str:
    """`--array=0-<N-1>[%K]`: one task per job of the batch."""
    n = len(request.batch.jobs)
    if n < 1:
        raise JobForgeError(f"batch {request.batch.batch} has no job to submit as an array")
    throttle = request.array_throttle
    if throttle is not None and (not isinstance(throttle, int) or throttle < 1):
        raise JobForgeError(f"array throttle {throttle!r} must be a positive integer")
    return f"--array=0-{n - 1}" + (f"%{throttle}" if throttle else "")


def runner_command(request: SubmitRequest) -> list[str]:
    command = [
        request.python,
        "-m",
        "airflow_jobforge.node",
        "run-batch",
        "$batch_file",
        "--output",
        "$out",
    ]
    if request.array:
        command += ["$array_index"]
    container = request.container
    if container is not None and container.scope == "runner":
        prefix = runner_prefix(
            container.runtime, container.image, container.bind, container.exec_args
        )
        command = prefix + command
    return command


def sbatch_job(request: SubmitRequest) -> SbatchJob:
    out = check_remote_path(request.output_dir, "output directory")
    if request.workdir is not None:
        check_remote_path(request.workdir, "working directory")
    name = job_name_for(request.tag)
    slurm_dir = f"{out.rstrip('/')}/slurm"
    # An array's files are per task: <name>-<array job id>_<task>.out
    job_pattern = "%A_%a" if request.array else "%j"
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={name}",
        f"--comment={COMMENT_PREFIX}{request.tag}",
        f"--output={slurm_dir}/{name}-{job_pattern}.out",
        f"--error={slurm_dir}/{name}-{job_pattern}.err",
    ]
    if request.array:
        argv.append(array_option(request))
    if request.workdir:
        argv.append(f"--chdir={request.workdir}")
    # A node failure must surface as NODE_FAIL for Airflow's retry, not rerun silently; a
    # user's own --requeue in `extra` comes later on the command line and wins.
    argv.append("--no-requeue")
    argv += sbatch_options(request.slurm)

    q = shlex.quote
    runner = " ".join(_VARIABLES.get(part) or q(part) for part in runner_command(request))
    batch_json = json.dumps(request.batch.to_dict(), separators=(",", ":"))
    pythonpath = ""
    if request.pythonpath:
        pythonpath = f'export PYTHONPATH={q(request.pythonpath)}"${{PYTHONPATH:+:$PYTHONPATH}}"\n'
    walltime_s = int(request.slurm.walltime_delta.total_seconds())
    script = f"""#!/bin/bash
# airflow-jobforge batch {q(request.batch.batch)} (tag {q(request.tag)})
set -u
# SLURM gives the job id (<array job>_<task> in an array); the local backend passes its own.
job_id=${{SLURM_JOB_ID:-${{JOBFORGE_JOB_ID:?neither SLURM_JOB_ID nor JOBFORGE_JOB_ID is set}}}}
if [ -n "${{SLURM_ARRAY_TASK_ID:-}}" ]; then
job_id=${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}
fi
out={q(out)}
slurm_dir={q(slurm_dir)}
batch_file="$out/batches/"{q(request.batch.batch)}".json"
exit_file="$slurm_dir/"{q(name)}"-$job_id.exit"
why=
rc={EXIT_OUTPUT_UNWRITABLE}
if mkdir -p "$out/batches" "$slurm_dir" && cat > "$batch_file.$job_id" <<'{HEREDOC}'
{batch_json}
{HEREDOC}
then
mv -f "$batch_file.$job_id" "$batch_file" && rc=0
fi
if [ "$rc" = 0 ]; then
{pythonpath}{NODE_NAMES}{ALLOCATION_END.format(walltime_s=walltime_s)}{runner} &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
while :; do wait "$child"; rc=$?; kill -0 "$child" 2>/dev/null || break; done
else
rm -f "$batch_file.$job_id" 2>/dev/null
why="output dir not writable: cannot write the batch file $batch_file"
echo "jobforge batch: $why" >&2
fi
put_exit() {{ printf '%s\\n' "$rc" > "$exit_file.tmp" && mv -f "$exit_file.tmp" "$exit_file"; }}
if ! err=$(put_exit 2>&1); then
rm -f "$exit_file.tmp" 2>/dev/null
why="cannot write the exit file $exit_file: ${{err##*: }}${{why:+; $why}}"
echo "jobforge batch: $why (exit code $rc)" >&2
fallback=${{{FALLBACK_ENV}:-}}
if [ -n "$fallback" ]; then
mkdir -p "$fallback" && printf '%s\\n%s\\n' "$rc" "$why" > "$fallback/"{q(name)}"-$job_id.exit"
fi
fi
exit "$rc"
"""
    return SbatchJob(
        argv=argv,
        script=script,
        job_name=name,
        slurm_dir=slurm_dir,
        batch_file=f"{out.rstrip('/')}/batches/{request.batch.batch}.json",
        batch_json=batch_json,
    )
