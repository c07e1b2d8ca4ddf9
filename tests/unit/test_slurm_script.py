from __future__ import annotations

import json
import subprocess

import pytest

from airflow_jobforge.config import ContainerParams, SlurmParams
from airflow_jobforge.errors import JobForgeError
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.slurm.script import SubmitRequest, sbatch_job

BATCH = BatchSpec("cpu-0000", (JobSpec("a", "echo 'it''s' \"$HOME\" $(date)"),))


def request(**kw) -> SubmitRequest:
    base = dict(tag="run1.cpu-0000", batch=BATCH, slurm=SlurmParams(), output_dir="/scratch/out")
    return SubmitRequest(**{**base, **kw})


def test_every_slurm_param_becomes_one_validated_sbatch_option():
    slurm = SlurmParams(
        account="acct",
        partition="debug",
        qos="high",
        reservation="r1",
        walltime="2-00:00:00",
        nodes=2,
        ntasks=4,
        ntasks_per_node=2,
        cpus_per_task=8,
        mem="16G",
        tmp="100G",
        gres="gpu:a100:2",
        constraint="a100&ib",
        extra=("--exclusive", "--mail-type=END"),
    )
    argv = sbatch_job(request(slurm=slurm)).argv
    assert argv[:6] == [
        "sbatch",
        "--parsable",
        "--job-name=jf-run1.cpu-0000",
        "--comment=jobforge:run1.cpu-0000",
        "--output=/scratch/out/slurm/jf-run1.cpu-0000-%j.out",
        "--error=/scratch/out/slurm/jf-run1.cpu-0000-%j.err",
    ]
    assert argv[6:] == [
        "--no-requeue",
        "--account=acct",
        "--partition=debug",
        "--qos=high",
        "--reservation=r1",
        "--time=2-00:00:00",
        "--nodes=2",
        "--ntasks=4",
        "--ntasks-per-node=2",
        "--cpus-per-task=8",
        "--mem=16G",
        "--tmp=100G",
        "--gres=gpu:a100:2",
        "--constraint=a100&ib",
        "--exclusive",
        "--mail-type=END",
    ]


def test_a_params_object_built_without_validation_is_still_checked():
    bad = SlurmParams.model_construct(
        partition="debug; touch /tmp/pwned", walltime="1:00:00", nodes=1, extra=()
    )
    with pytest.raises(ValueError, match="not a valid SLURM name"):
        sbatch_job(request(slurm=bad))


@pytest.mark.parametrize("tag", ["a b", "x;id", "$(id)", "", "a/b"])
def test_tags_with_shell_or_path_characters_are_rejected(tag):
    with pytest.raises(JobForgeError, match="submission tag"):
        sbatch_job(request(tag=tag))


@pytest.mark.parametrize("path", ["relative/out", "/out\nrm -rf /", "/a\x00b"])
def test_output_dir_must_be_absolute_without_control_characters(path):
    with pytest.raises(JobForgeError, match="output directory"):
        sbatch_job(request(output_dir=path))


def test_script_carries_the_batch_file_verbatim_in_a_quoted_heredoc():
    script = sbatch_job(request()).script
    body = script.split("<<'JOBFORGE_BATCH_EOF'\n", 1)[1].split("\nJOBFORGE_BATCH_EOF\n", 1)[0]
    assert BatchSpec.from_dict(json.loads(body)) == BATCH


def test_script_is_valid_bash_and_quotes_hostile_paths(tmp_path):
    hostile = "/tmp/o'; touch /tmp/pwned; echo '$(id)"
    script = sbatch_job(
        request(
            output_dir=hostile,
            pythonpath="/opt/x y",
            python="/usr/bin/py 3",
            container=ContainerParams(image="/img/a b.sif", bind=("/s;t",), scope="runner"),
        )
    ).script
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0
    assert "out='/tmp/o'\"'\"'; touch /tmp/pwned; echo '\"'\"'$(id)'" in script
    assert "apptainer exec --bind '/s;t' '/img/a b.sif' '/usr/bin/py 3' -m" in script
    assert "export PYTHONPATH='/opt/x y'" in script


def test_container_runtime_wraps_the_node_runner():
    script = sbatch_job(
        request(
            container=ContainerParams(
                image="/i.sif", runtime="singularity", exec_args=("--nv",), scope="runner"
            )
        )
    ).script
    assert "singularity exec --nv /i.sif python3 -m airflow_jobforge.node run-batch" in script


def test_rendered_script_runs_the_node_runner_and_writes_the_exit_file(tmp_path):
    """Run the script with bash as sbatch would (SLURM_JOB_ID set): records and exit file."""
    import sys
    from pathlib import Path

    out = tmp_path / "out dir"
    repo = Path(__file__).resolve().parents[2]
    batch = BatchSpec("b-0000", (JobSpec("ok", "true"), JobSpec("bad", "exit 5")))
    script = sbatch_job(
        request(batch=batch, output_dir=str(out), python=sys.executable, pythonpath=str(repo))
    ).script
    env = {"SLURM_JOB_ID": "77", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(["bash", "-c", script], env=env, check=False, capture_output=True)
    assert result.returncode == 1, result.stderr
    assert (out / "slurm" / "jf-run1.cpu-0000-77.exit").read_text() == "1\n"
    lines = (out / "results" / "b-0000.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["name"] for x in lines) == ["bad", "ok"]


def test_an_output_dir_that_cannot_be_written_ends_the_batch_at_once_with_the_reason(tmp_path):
    """The batch file cannot be written (here the output dir's parent is a file; a full disk
    is tests/unit/test_full_disk.py): exit 74 at once, the runner never starts, stderr names
    the paths and the error, and the exit code lands in the fallback dir with the reason."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    out = blocker / "out"
    fallback = tmp_path / "fallback"
    script = sbatch_job(request(output_dir=str(out), python="/nonexistent/python")).script
    env = {
        "SLURM_JOB_ID": "78",
        "PATH": "/usr/bin:/bin",
        "JOBFORGE_EXIT_FALLBACK_DIR": str(fallback),
    }
    result = subprocess.run(["bash", "-c", script], env=env, check=False, capture_output=True)
    assert result.returncode == 74
    err = result.stderr.decode()
    assert f"cannot write the batch file {out}/batches/cpu-0000.json" in err
    assert "/nonexistent/python" not in err
    exit_file = f"{out}/slurm/jf-run1.cpu-0000-78.exit"
    code, reason = (fallback / "jf-run1.cpu-0000-78.exit").read_text().splitlines()
    assert code == "74"
    assert reason.startswith(f"cannot write the exit file {exit_file}: Not a directory; ")
    assert f"jobforge batch: cannot write the exit file {exit_file}: Not a directory" in err
