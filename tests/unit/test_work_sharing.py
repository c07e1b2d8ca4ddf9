"""Work sharing between the batches of a group (`batching.work_sharing`): chunk claims in the
run dir, the planner's claim unit, which chunks another batch may take, real node runners
sharing a run dir (no SLURM), the readers that find a job's record wherever it ran, and the
Airflow side's view of jobs other batches still run."""

from __future__ import annotations

import json
import multiprocessing
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from airflow_jobforge.config import SlurmParams, parse_configuration
from airflow_jobforge.local import backend as local_backend
from airflow_jobforge.local.backend import LocalClient
from airflow_jobforge.node.runner import run_batch
from airflow_jobforge.node.sharing import takeable_chunks
from airflow_jobforge.planning.planner import batch_spec, claim_chunk, merge_arrays, plan_batches
from airflow_jobforge.rundir import ResultRecord, read_records
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec
from airflow_jobforge.rundir.claims import (
    CLAIM_FILE,
    Claim,
    chunk_dir,
    claimed_away,
    parse_claim_lines,
    read_claims,
    shared_results_file,
    try_claim,
)
from airflow_jobforge.slurm.client import SlurmClient
from airflow_jobforge.slurm.script import SubmitRequest, sbatch_job
from airflow_jobforge.slurm.sharing import (
    BEING_WRITTEN,
    claimed_and_running,
    secure_unrecorded,
    taken_by_others,
)
from airflow_jobforge.slurm.states import JobStatus, Outcome
from airflow_jobforge.slurm.transport import CommandResult, LocalTransport

A, B = "g-0000", "g-0001"


# --- helpers ---------------------------------------------------------------------------------
def spec(
    batch: str,
    jobs: Sequence[JobSpec],
    *,
    procs: int = 2,
    chunk: int = 1,
    share: bool = True,
    group: str | None = "g",
    **kw: object,
) -> BatchSpec:
    return BatchSpec(
        batch,
        tuple(jobs),
        num_processes=procs,
        group=group,
        share=share,
        claim_chunk=chunk,
        **kw,  # type: ignore[arg-type]
    )


def jobs(prefix: str, n: int, command: str = "true") -> list[JobSpec]:
    return [JobSpec(f"{prefix}{i}", command) for i in range(n)]


def publish(out: Path, *specs: BatchSpec) -> None:
    """The batch files the submit tasks write before sbatch: what runners learn peers from."""
    (out / "batches").mkdir(parents=True, exist_ok=True)
    for s in specs:
        s.dump(out / "batches" / f"{s.batch}.json")


def run(out: Path, s: BatchSpec) -> int:
    return run_batch(s, out, monitor_interval_s=0)


def start_runner(out: Path, batch: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_jobforge.node",
            "run-batch",
            str(out / "batches" / f"{batch}.json"),
            "--output",
            str(out),
            "--monitor-interval",
            "0",
        ]
    )


def all_records(out: Path) -> list[ResultRecord]:
    """Every record of every result file: a job recorded twice shows twice."""
    return [r for p in sorted((out / "results").glob("*.jsonl")) for r in read_records(p)]


def assert_one_record_each(out: Path, names: Sequence[str]) -> dict[str, ResultRecord]:
    records = all_records(out)
    counts = Counter(r.name for r in records)
    assert sorted(counts) == sorted(names)
    assert {n for n, c in counts.items() if c > 1} == set()
    return {r.name: r for r in records}


def wait_for(path: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


# --- claims ----------------------------------------------------------------------------------
def test_a_chunk_is_claimed_once_and_its_claim_file_names_the_claimer(tmp_path):
    claim = Claim(batch=A, hpc_job_id="77", host="node1")
    assert try_claim(tmp_path, B, 3, claim) is True
    assert try_claim(tmp_path, B, 3, Claim(batch="g-0002")) is False
    by = json.loads((chunk_dir(tmp_path, B, 3) / CLAIM_FILE).read_text())
    assert (by["batch"], by["hpc_job_id"], by["host"]) == (A, "77", "node1") and by["t"] > 0
    assert read_claims(tmp_path, B)[3] == Claim(A, "77", "node1", by["t"])


def _race_for_the_chunk(run_dir: str, index: int, barrier: Barrier) -> None:
    barrier.wait()
    sys.exit(0 if try_claim(run_dir, B, 0, Claim(batch=f"r{index}")) else 1)


def test_of_twelve_processes_racing_for_one_chunk_exactly_one_wins(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(12)
    procs = [
        ctx.Process(target=_race_for_the_chunk, args=(str(tmp_path), i, barrier)) for i in range(12)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(20)
    codes = [p.exitcode for p in procs]
    assert sorted(codes) == [0] + [1] * 11
    winner = codes.index(0)
    assert read_claims(tmp_path, B) == {0: Claim(f"r{winner}", t=read_claims(tmp_path, B)[0].t)}


def test_read_claims_gives_none_for_a_claim_whose_file_is_not_written_yet(tmp_path):
    try_claim(tmp_path, B, 0, Claim(batch=A))
    chunk_dir(tmp_path, B, 1).mkdir()  # mkdir won, by.json not written yet
    (chunk_dir(tmp_path, B, 0).parent / ".tmp").mkdir()  # not a chunk
    claims = read_claims(tmp_path, B)
    assert sorted(claims) == [0, 1]
    assert claims[0] is not None and claims[0].batch == A and claims[1] is None
    assert read_claims(tmp_path, "g-0009") == {}


def test_claim_lines_of_a_remote_reader_parse_with_a_missing_claim_file_as_none():
    by = json.dumps({"batch": A, "hpc_job_id": "5", "host": "n1", "t": 1.5})
    got = parse_claim_lines([f"000003 {by}", "000004 ", "000005 {broken", "[0-9]* ", ""])
    assert got == {3: Claim(A, "5", "n1", 1.5), 4: None, 5: None}


def test_claimed_away_maps_the_jobs_of_chunks_other_batches_claimed_and_not_own_claims():
    places = [(f"j{i}", i) for i in range(5)]  # chunks of 2: (j0 j1) (j2 j3) (j4)
    other = Claim(batch=A, hpc_job_id="1")
    claims = {0: Claim(batch=B), 1: None, 2: other}
    assert claimed_away(claims, B, 2, places) == {"j2": None, "j3": None, "j4": other}
    assert claimed_away({}, B, 2, places) == {}
    # a retry of j3 and j4 alone counts them by their planned places
    assert claimed_away(claims, B, 2, [("j3", 3), ("j4", 4)]) == {"j3": None, "j4": other}


def test_records_of_a_job_run_by_another_batch_go_to_a_file_of_the_owners(tmp_path):
    path = shared_results_file(tmp_path, B, A)
    assert path == tmp_path / "results" / f"{B}.by-{A}.jsonl"


# --- planner ---------------------------------------------------------------------------------
def config_jobs(*minutes: float | None) -> list:
    cfg = parse_configuration(
        {
            "jobs": [
                {"name": f"j{i}", "command": "true"}
                | ({} if m is None else {"estimated_run_minutes": m})
                for i, m in enumerate(minutes)
            ]
        }
    )
    return list(cfg.jobs)


def test_claim_chunk_is_one_job_for_jobs_estimated_at_30_s_or_more():
    assert claim_chunk(config_jobs(0.5, 0.5), 4) == 1
    assert claim_chunk(config_jobs(10, 60, 2), 4) == 1
    assert claim_chunk(config_jobs(0.25, 0.75), 4) == 1  # mean 30 s


def test_claim_chunk_is_about_30_s_of_short_estimated_jobs_at_most_64():
    assert claim_chunk(config_jobs(0.25, 0.25), 4) == 2  # 15 s
    assert claim_chunk(config_jobs(0.125, 0.375), 4) == 2  # mean 15 s
    assert claim_chunk(config_jobs(0.0625), 4) == 8  # 3.75 s
    assert claim_chunk(config_jobs(0.001, 0.001), 4) == 64  # 0.06 s: capped


def test_claim_chunk_without_estimates_is_an_eighth_of_a_slots_share_at_least_one():
    assert claim_chunk(config_jobs(*[None] * 100), 2) == 6  # 100 // 16
    assert claim_chunk(config_jobs(*[None] * 100), None) == 12  # one slot
    assert claim_chunk(config_jobs(*[None] * 5), 4) == 1
    assert claim_chunk(config_jobs(*[None] * 10_000), 1) == 64
    assert claim_chunk([], 4) == 1
    # one job without an estimate: the estimates say nothing about the batch
    assert claim_chunk(config_jobs(*[0.001] * 99, None), 2) == 6


def sharing_config(**batching: object):
    return parse_configuration(
        {
            "jobs": [{"name": f"j{i}", "command": "true"} for i in range(32)],
            "submission_groups": [
                {"name": "g", "batching": {"per_node_batch_size": 16, **batching}}
            ],
        }
    )


def test_a_group_with_work_sharing_plans_batches_that_share_with_its_name_and_claim_chunk():
    cfg = sharing_config(work_sharing=True, num_processes=1)
    plan = plan_batches(cfg)
    specs = [batch_spec(cfg, plan, b) for b in plan.batches]
    assert [(s.batch, s.share, s.group, s.claim_chunk) for s in specs] == [
        (A, True, "g", 2),  # 16 jobs // (8 x 1 slot)
        (B, True, "g", 2),
    ]


def test_work_sharing_is_on_by_default_and_a_group_option_turns_it_off():
    cfg = sharing_config()
    assert cfg.group("g").batching.work_sharing is True
    plan = plan_batches(cfg)
    assert all(batch_spec(cfg, plan, b).share for b in plan.batches)
    cfg = sharing_config(work_sharing=False)
    plan = plan_batches(cfg)
    assert not any(batch_spec(cfg, plan, b).share for b in plan.batches)


def test_job_arrays_never_share():
    cfg = parse_configuration(
        {
            "jobs": [{"name": f"j{i}", "command": "true"} for i in range(4)],
            "submission_groups": [
                {"name": "g", "batching": {"per_node_batch_size": 1, "work_sharing": True}}
            ],
        }
    )
    plan = merge_arrays(plan_batches(cfg), cfg)
    assert [b.array for b in plan.batches] == [True]
    assert batch_spec(cfg, plan, plan.batches[0]).share is False


def test_a_batch_files_round_trip_keeps_the_sharing_fields(tmp_path):
    s = spec(B, jobs("j", 3), chunk=5)
    assert BatchSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    s.dump(tmp_path / "b.json")
    loaded = BatchSpec.load(tmp_path / "b.json")
    assert (loaded.group, loaded.share, loaded.claim_chunk) == ("g", True, 5)
    old = s.to_dict()
    for key in ("group", "share", "claim_chunk"):
        del old[key]  # a batch file written before work sharing
    assert BatchSpec.from_dict(old) == spec(B, jobs("j", 3), share=False, group=None)


# --- which chunks another batch may take -----------------------------------------------------
def test_chunks_with_a_blocked_job_or_a_job_another_waits_for_are_not_takeable():
    s = spec(
        B,
        [
            JobSpec("free0", "true"),
            JobSpec("first", "true"),
            JobSpec("free1", "true"),
            JobSpec("then", "true", blocked_by=("first",)),
            JobSpec("free2", "true"),
            JobSpec("outside", "true", external_blockers=("x",)),
            JobSpec("free3", "true"),
        ],
    )
    assert takeable_chunks(s) == [0, 2, 4, 6]
    # chunks of 2: (free0 first) (free1 then) (free2 outside) (free3)
    assert takeable_chunks(spec(B, s.jobs, chunk=2)) == [3]
    assert takeable_chunks(spec(B, jobs("j", 5), chunk=2)) == [0, 1, 2]


# --- real runners sharing a run dir ----------------------------------------------------------
def test_a_runner_runs_the_jobs_of_a_pending_batch_and_that_batchs_runner_then_has_none(
    tmp_path,
):
    a = spec(A, jobs("a", 4, "sleep 0.05"))
    b = spec(B, jobs("b", 6, "sleep 0.05"))
    publish(tmp_path, a, b)
    assert run(tmp_path, a) == 0
    shared = shared_results_file(tmp_path, B, A)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        f"{A}.jsonl",
        shared.name,
    ]
    theirs = list(read_records(shared))
    assert sorted(r.name for r in theirs) == [f"b{i}" for i in range(6)]
    assert {(r.batch, r.ran_in, r.status, r.return_code) for r in theirs} == {(B, A, "finished", 0)}
    assert {r.ran_in for r in read_records(tmp_path / "results" / f"{A}.jsonl")} == {None}
    assert {c.batch for c in read_claims(tmp_path, B).values() if c} == {A}
    assert sorted(read_claims(tmp_path, B)) == list(range(6))

    started = time.monotonic()
    assert run(tmp_path, b) == 0
    assert time.monotonic() - started < 1
    assert not (tmp_path / "results" / f"{B}.jsonl").exists()
    assert_one_record_each(tmp_path, [j.name for j in a.jobs + b.jobs])


def test_four_runners_of_a_sweep_run_every_job_exactly_once(tmp_path):
    """Two runners start together, the other two after them: those find nothing left."""
    specs = []
    for n in range(4):
        sweep = [JobSpec(f"j{n}{i}", f"sleep {0.02 + 0.02 * (10 * n + i):.2f}") for i in range(10)]
        specs.append(spec(f"g-{n:04d}", sweep))
    publish(tmp_path, *specs)
    for pair in (specs[:2], specs[2:]):
        procs = [start_runner(tmp_path, s.batch) for s in pair]
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    names = [j.name for s in specs for j in s.jobs]
    got = assert_one_record_each(tmp_path, names)
    assert all(r.succeeded for r in got.values())
    late = [r for r in got.values() if r.batch in ("g-0002", "g-0003")]
    assert {r.ran_in for r in late} <= {A, B}  # the first two took them all before ending
    for r in got.values():
        assert r.batch == f"g-{int(r.name[1]):04d}"


@pytest.mark.parametrize(
    "other",
    [{"share": False}, {"group": "h"}],
    ids=["sharing-off", "another-group"],
)
def test_a_runner_does_not_take_jobs_of_a_batch_that_does_not_share_with_it(tmp_path, other):
    a = spec(A, jobs("a", 2))
    b = spec(B, jobs("b", 3), **other)  # type: ignore[arg-type]
    publish(tmp_path, a, b)
    assert run(tmp_path, a) == 0
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [f"{A}.jsonl"]
    assert not (tmp_path / "claims" / B).exists()
    assert run(tmp_path, b) == 0
    got = assert_one_record_each(tmp_path, ["a0", "a1", "b0", "b1", "b2"])
    assert {got[f"b{i}"].ran_in for i in range(3)} == {None}


def test_a_batch_keeps_its_jobs_that_wait_for_each_other(tmp_path):
    a = spec(A, jobs("a", 1))
    b = spec(
        B,
        [
            JobSpec("b0", "true"),
            JobSpec("b1", "true", blocked_by=("b0",)),
            JobSpec("b2", "true"),
        ],
    )
    publish(tmp_path, a, b)
    assert run(tmp_path, a) == 0
    assert {c.batch for c in read_claims(tmp_path, B).values() if c} == {A}
    assert sorted(read_claims(tmp_path, B)) == [2]  # b2 alone was taken
    assert run(tmp_path, b) == 0
    got = assert_one_record_each(tmp_path, ["a0", "b0", "b1", "b2"])
    assert (got["b0"].ran_in, got["b1"].ran_in, got["b2"].ran_in) == (None, None, A)
    assert got["b0"].end <= got["b1"].start


def test_a_terminated_runner_records_the_jobs_it_took_and_their_owner_does_not_run_them(
    tmp_path,
):
    a = spec(A, jobs("a", 1), procs=1)
    b = spec(B, jobs("b", 3, "sleep 30"), chunk=3)
    publish(tmp_path, a, b)
    proc = start_runner(tmp_path, A)
    wait_for(tmp_path / "job-output" / "b0.out")  # A started the first job of B's chunk
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    theirs = {r.name: r for r in read_records(shared_results_file(tmp_path, B, A))}
    assert {n: r.status for n, r in theirs.items()} == {
        "b0": "missing",
        "b1": "canceled",
        "b2": "canceled",
    }
    assert {(r.batch, r.ran_in) for r in theirs.values()} == {(B, A)}
    assert "SIGTERM" in (theirs["b0"].reason or "")

    started = time.monotonic()
    assert run(tmp_path, b) == 0  # claimed by A: not B's to run
    assert time.monotonic() - started < 1
    assert_one_record_each(tmp_path, ["a0", "b0", "b1", "b2"])


def test_a_terminated_owner_claims_its_unstarted_jobs_so_no_other_runner_runs_them(tmp_path):
    a = spec(A, jobs("a", 1))
    b = spec(B, [JobSpec("b0", "sleep 30"), *jobs("b", 4)[1:]], procs=1)
    publish(tmp_path, a, b)
    proc = start_runner(tmp_path, B)
    wait_for(tmp_path / "job-output" / "b0.out")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert {c.batch for c in read_claims(tmp_path, B).values() if c} == {B}
    assert run(tmp_path, a) == 0
    got = assert_one_record_each(tmp_path, ["a0", "b0", "b1", "b2", "b3"])
    assert [got[f"b{i}"].status for i in range(4)] == [
        "missing",
        "canceled",
        "canceled",
        "canceled",
    ]
    assert {got[f"b{i}"].ran_in for i in range(4)} == {None}


def test_a_batch_whose_node_setup_failed_cancels_its_jobs_and_no_other_runner_runs_them(
    tmp_path,
):
    a = spec(A, jobs("a", 1))
    b = spec(B, jobs("b", 3), node_setup_command="exit 3")
    publish(tmp_path, a, b)
    assert run(tmp_path, b) == 1
    assert run(tmp_path, a) == 0
    got = assert_one_record_each(tmp_path, ["a0", "b0", "b1", "b2"])
    assert [got[f"b{i}"].status for i in range(3)] == ["canceled"] * 3


# --- readers ---------------------------------------------------------------------------------
@pytest.fixture
def shared_run(tmp_path) -> Path:
    """A ran B's jobs; a claim of B's is being written (chunk 9)."""
    out = tmp_path / "run"
    a = spec(A, jobs("a", 2))
    b = spec(B, jobs("b", 3))
    publish(out, a, b)
    assert run(out, a) == 0
    chunk_dir(out, B, 9).mkdir()
    return out


def test_the_local_backend_reads_a_batchs_records_that_other_batches_wrote(shared_run, tmp_path):
    client = LocalClient(tmp_path / "state")
    got = client.read_results(str(shared_run), B)
    assert sorted(got) == ["b0", "b1", "b2"]
    assert {r.ran_in for r in got.values()} == {A}
    assert sorted(client.read_results(str(shared_run), A)) == ["a0", "a1"]
    assert client.read_claims(str(shared_run), B) == read_claims(shared_run, B)


def test_the_slurm_client_reads_them_through_its_shell_scripts(shared_run):
    client = SlurmClient(LocalTransport())
    got = client.read_results(str(shared_run), B)
    assert sorted(got) == ["b0", "b1", "b2"]
    assert {(r.batch, r.ran_in) for r in got.values()} == {(B, A)}
    assert sorted(client.read_results(str(shared_run), A)) == ["a0", "a1"]
    claims = client.read_claims(str(shared_run), B)
    assert claims == read_claims(shared_run, B)
    assert claims[9] is None and {c.batch for c in claims.values() if c} == {A}
    assert client.read_claims(str(shared_run), "g-0007") == {}


# --- submit ----------------------------------------------------------------------------------
def request(out: Path, share: bool) -> SubmitRequest:
    return SubmitRequest(
        tag=f"t-{int(share)}",
        batch=spec(B, jobs("b", 2), share=share),
        slurm=SlurmParams(),
        output_dir=str(out),
        python=sys.executable,
    )


@pytest.mark.parametrize("share", [True, False])
def test_the_local_backend_writes_a_sharing_batchs_file_before_it_starts(
    tmp_path, monkeypatch, share
):
    out = tmp_path / "out"
    batch_file = out / "batches" / f"{B}.json"
    seen: list[bool] = []

    class Started:
        pid = 999_999_999

        def __init__(self, *args: object, **kwargs: object) -> None:
            seen.append(batch_file.exists())

    monkeypatch.setattr(local_backend.subprocess, "Popen", Started)
    req = request(out, share)
    LocalClient(tmp_path / "state").submit(req, adopt=False)
    assert seen == [share]
    if share:
        assert BatchSpec.load(batch_file) == req.batch
        assert [p.name for p in batch_file.parent.iterdir()] == [batch_file.name]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], str | None]] = []

    def run(self, argv: Sequence[str], *, input=None, timeout=None) -> CommandResult:
        self.calls.append((tuple(argv), input))
        return CommandResult(tuple(argv), 0, "4242\n" if argv[0] == "sbatch" else "", "")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("share", [True, False])
def test_the_slurm_client_writes_a_sharing_batchs_file_before_sbatch(tmp_path, share):
    req = request(tmp_path, share)
    transport = Recorder()
    assert SlurmClient(transport).submit(req, adopt=False).job_id == "4242"
    programs = [argv[0] for argv, _ in transport.calls]
    prepared = sbatch_job(req)
    assert prepared.batch_file == f"{tmp_path}/batches/{B}.json"
    assert BatchSpec.from_dict(json.loads(prepared.batch_json)) == req.batch
    if share:
        assert programs == ["mkdir", "sh", "sbatch"]
        argv, data = transport.calls[1]
        assert prepared.batch_file in argv and data == prepared.batch_json
    else:
        assert programs == ["mkdir", "sbatch"]


# --- the Airflow side: jobs other batches still run ------------------------------------------
class FakeClient:
    def __init__(self, claims: dict[int, Claim | None], live: set[str]) -> None:
        self.claims = claims
        self.live = live
        self.asked: list[list[str]] = []

        self.claimed: list[list[int]] = []

    def read_claims(self, output_dir: str, batch: str) -> dict[int, Claim | None]:
        assert batch == B
        return self.claims

    def claim_chunks(self, output_dir: str, batch: str, chunks, claim: Claim):
        self.claimed.append(list(chunks))
        for chunk in chunks:
            self.claims.setdefault(chunk, claim)
        return self.read_claims(output_dir, batch)

    def status(self, job_ids, exit_files=None) -> dict[str, JobStatus]:
        ids = list(job_ids)
        self.asked.append(ids)
        return {
            i: JobStatus(i, "RUNNING", Outcome.RUNNING, source="squeue")
            if i in self.live
            else JobStatus(i, "COMPLETED", Outcome.SUCCEEDED, exit_code=0, source="sacct")
            for i in ids
        }


def record(name: str) -> ResultRecord:
    return ResultRecord(
        name=name, status="finished", return_code=0, exec_time_s=1.0, start=1.0, end=2.0, batch=B
    )


def test_jobs_claimed_by_a_batch_still_in_the_queue_and_without_a_record_are_awaited():
    req = SubmitRequest(
        tag="t", batch=spec(B, jobs("j", 6)), slurm=SlurmParams(), output_dir="/run"
    )
    client = FakeClient(
        {
            0: Claim(A, hpc_job_id="11"),  # live, no record: awaited
            1: Claim("g-0002", hpc_job_id="12"),  # ended: its runner recorded what it ran
            2: Claim(A, hpc_job_id="11"),  # live, recorded already
            3: None,  # being written: its claimer is not known yet
            4: Claim(B, hpc_job_id="13"),  # the batch's own claim
            5: Claim(A, hpc_job_id=None),  # no id to ask the queue about
        },
        live={"11"},
    )
    records = {"j2": record("j2")}
    away = secure_unrecorded(client, req, records, "13")  # type: ignore[arg-type]
    assert client.claimed == [[0, 1, 3, 4, 5]]  # tried; every one has its claimer already
    got = claimed_and_running(client, away, records)  # type: ignore[arg-type]
    assert got == {"j0": A, "j3": BEING_WRITTEN}
    assert client.asked == [["11", "12"]]


def test_nothing_is_asked_of_the_queue_when_no_job_is_taken_or_the_batch_does_not_share():
    claims = {0: Claim(A, hpc_job_id="11")}
    done = FakeClient(claims, live={"11"})
    req = SubmitRequest(
        tag="t", batch=spec(B, jobs("j", 1)), slurm=SlurmParams(), output_dir="/run"
    )
    records = {"j0": record("j0")}
    away = secure_unrecorded(done, req, records, "13")  # type: ignore[arg-type]
    assert claimed_and_running(done, away, records) == {}  # type: ignore[arg-type]
    assert done.asked == [] and done.claimed == []  # all recorded: only read, nothing claimed
    alone = SubmitRequest(
        tag="t", batch=spec(B, jobs("j", 1), share=False), slurm=SlurmParams(), output_dir="/r"
    )
    assert taken_by_others(done, alone) == {}  # type: ignore[arg-type]
    assert secure_unrecorded(done, alone, {}, "13") == {}  # type: ignore[arg-type]
    assert done.asked == [] and done.claimed == []


def test_before_the_wait_records_unrecorded_jobs_it_claims_their_chunks_for_the_batch():
    req = SubmitRequest(
        tag="t", batch=spec(B, jobs("j", 6), chunk=2), slurm=SlurmParams(), output_dir="/run"
    )
    client = FakeClient({1: Claim(A, hpc_job_id="11")}, live=set())
    records = {"j0": record("j0"), "j1": record("j1"), "j4": record("j4")}
    away = secure_unrecorded(client, req, records, "13")  # type: ignore[arg-type]
    assert client.claimed == [[1, 2]]  # j2/j3's chunk and j5's; not the recorded j0/j1's
    assert client.claims[2] == Claim(B, "13", "airflow")
    assert away == {"j2": Claim(A, hpc_job_id="11"), "j3": Claim(A, hpc_job_id="11")}


def test_a_chunk_the_wait_claimed_for_a_batch_is_not_taken_by_another_runner(shared_run, tmp_path):
    b = spec(B, jobs("b", 3))
    c = spec("g-0002", jobs("c", 1))
    publish(shared_run, c)
    for client in (LocalClient(tmp_path / "state"), SlurmClient(LocalTransport())):
        claims = client.claim_chunks(str(shared_run), "g-0002", [0], Claim("g-0002", "5", "x"))
        assert claims[0] == Claim("g-0002", "5", "x", claims[0].t)
    claims = SlurmClient(LocalTransport()).claim_chunks(
        str(shared_run), B, [0, 9], Claim(B, "6", "airflow")
    )
    assert claims[0].batch == A and claims[9] is None  # held already: unchanged
    assert run(shared_run, spec("g-0003", jobs("d", 1))) == 0  # a runner with room
    assert {r.name for r in all_records(shared_run)} == {"a0", "a1", "b0", "b1", "b2", "d0"}
    assert b.batch == B
