"""A JADE pipeline, built as a JADE user builds one, runs under JADE (nrel-jade, local hpc
type) and under jobforge, without Airflow and with embedded Airflow: the three runs leave
the same files with the same contents.

The pipeline: stage 1's commands file has a simulation per line (JADE runs a job's command
without a shell: `python sim.py I OUTDIR`); its auto-config script `stage1.sh` calls `jade
config create`. Stage 2's script `stage2.sh` looks for stage 1's output dir where JADE puts
it (`$JADE_PIPELINE_OUTPUT_DIR/output-stage1`), writes a commands file with one aggregation
per simulation output plus a summary, makes the summary blocked by the others (`jade config
assign-blocked-by`) and writes `config-stage2.json`. `jade pipeline create` takes config files
or auto-config commands, not both, so both stages are auto-config scripts, the common JADE
usage. The scripts are given by absolute path: JADE runs them in the directory `jade pipeline
submit` ran in, jobforge in the pipeline run dir.

Each run gets its own copy of the pipeline, whose jobs write into their own dir. No SLURM.
`benchmarks/pipeline.py` times the same pipeline (`build_jade_pipeline`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

BIN = Path(sys.executable).parent
JADE = BIN / "jade"

SIM = """\
import pathlib, sys
i, out = int(sys.argv[1]), pathlib.Path(sys.argv[2])
value = sum(k * k for k in range(1, 1000 * i))
(out / f"sim_{i}.txt").write_text(f"sim {i} {value}\\n")
"""
AGG = """\
import pathlib, sys
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
words = src.read_text().split()
dst.write_text(f"agg {words[1]} {int(words[2]) % 9973}\\n")
"""
SUMMARY = """\
import pathlib, sys
out = pathlib.Path(sys.argv[1])
lines = [p.read_text() for p in sorted(out.glob("agg_*.txt"))]
(out / "summary.txt").write_text(f"{len(lines)} aggregates\\n" + "".join(lines))
"""
STAGE1 = """\
set -e
jade config create {dir}/cmds1.txt -c config-stage1.json
"""
STAGE2 = """\
set -e
test -d "$JADE_PIPELINE_OUTPUT_DIR/output-stage1" || {{ echo "no stage 1 output dir"; exit 1; }}
test "$JADE_PIPELINE_STAGE_ID" = 2
n=0
: > cmds2.txt
for f in {results}/sim_*.txt; do
    i=$(basename "$f" .txt); i=${{i#sim_}}
    echo "{python} {dir}/agg.py $f {results}/agg_$i.txt" >> cmds2.txt
    n=$((n + 1))
done
echo "{python} {dir}/summary.py {results}" >> cmds2.txt
jade config create cmds2.txt -c config-stage2.json
jade config assign-blocked-by config-stage2.json $n -o config-stage2.json
"""


@dataclass(frozen=True)
class JadePipeline:
    directory: Path
    """Where the scripts, commands files and pipeline file are; JADE runs from here."""
    pipeline_file: Path
    results: Path
    """Where the jobs write."""
    sims: int


def jade_env() -> dict[str, str]:
    """`jade` on PATH for the scripts, as in a user's activated environment."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def build_jade_pipeline(
    directory: Path, *, sims: int = 4, poll_interval: float | None = None
) -> JadePipeline:
    """The two-stage pipeline in `directory` (made), by `jade config hpc` and `jade pipeline
    create`; `poll_interval`: JADE's `-p` (None: its default, 10 s)."""
    directory.mkdir(parents=True)
    results = directory / "results"
    results.mkdir()
    python = sys.executable
    (directory / "sim.py").write_text(SIM)
    (directory / "agg.py").write_text(AGG)
    (directory / "summary.py").write_text(SUMMARY)
    (directory / "cmds1.txt").write_text(
        "".join(f"{python} {directory}/sim.py {i} {results}\n" for i in range(1, sims + 1))
    )
    (directory / "stage1.sh").write_text(STAGE1.format(dir=directory))
    (directory / "stage2.sh").write_text(
        STAGE2.format(dir=directory, results=results, python=python)
    )
    jade(directory, "config", "hpc", "-t", "local", "-c", "hpc_config.toml")
    create = ["pipeline", "create", "-c", "pipeline.toml", "-h", "hpc_config.toml"]
    # Relative script paths, as JADE users write them: they run where the pipeline file is.
    create += ["-a", "bash stage1.sh", "-a", "bash stage2.sh"]
    if poll_interval is not None:
        create += ["-p", str(poll_interval)]
    jade(directory, *create)
    return JadePipeline(directory, directory / "pipeline.toml", results, sims)


def jade(cwd: Path, *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [str(JADE), *args],
        cwd=cwd,
        env=jade_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"jade {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def run_jade(pipeline: JadePipeline, output: Path) -> float:
    """`jade pipeline submit`; seconds. JADE exits 0 even when a stage failed: its status
    file says whether the pipeline completed."""
    started = time.perf_counter()
    jade(pipeline.directory, "pipeline", "submit", str(pipeline.pipeline_file), "-o", str(output))
    seconds = time.perf_counter() - started
    status = json.loads((output / "pipeline.json").read_text())
    assert status["is_complete"], status
    assert [s["return_code"] for s in status["stages"]] == [0, 0], status
    return seconds


def run_jobforge(pipeline: JadePipeline, output: Path, *extra: str, timeout: float = 600) -> float:
    """`jobforge run PIPELINE -o OUTPUT EXTRA...` in a process of its own; seconds."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "airflow_jobforge.cli.main", "run", str(pipeline.pipeline_file)]
        + ["-o", str(output), *extra],
        cwd=pipeline.directory,
        env=jade_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, f"{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    assert "Traceback" not in result.stdout + result.stderr
    return seconds


def tree(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir())}


def test_jade_and_jobforge_runs_of_a_jade_pipeline_leave_the_same_outputs(tmp_path):
    runs = {}
    times = {}
    # -p 1: JADE's default poll of 10 s would make its run ~60 s, all of it waiting.
    pipeline = build_jade_pipeline(tmp_path / "jade", poll_interval=1)
    times["jade"] = run_jade(pipeline, tmp_path / "jade-out")
    runs["jade"] = pipeline

    pipeline = build_jade_pipeline(tmp_path / "nodag", poll_interval=1)
    times["jobforge --no-airflow"] = run_jobforge(pipeline, tmp_path / "nodag-out", "--no-airflow")
    runs["jobforge --no-airflow"] = pipeline

    pipeline = build_jade_pipeline(tmp_path / "embedded", poll_interval=1)
    home = tmp_path / "airflow-home"
    times["jobforge run (embedded Airflow)"] = run_jobforge(
        pipeline, tmp_path / "embedded-out", "--airflow-home", str(home)
    )
    runs["jobforge run (embedded Airflow)"] = pipeline

    print()
    for name, seconds in times.items():
        print(f"{name:32} {seconds:6.1f} s")

    expected = tree(runs["jade"].results)
    sims = runs["jade"].sims
    assert len(expected) == 2 * sims + 1, sorted(expected)
    assert expected["summary.txt"].startswith(f"{sims} aggregates\n")
    assert len(expected["summary.txt"].splitlines()) == sims + 1, "summary ran after every agg"
    for name, pipeline in runs.items():
        assert tree(pipeline.results) == expected, name
