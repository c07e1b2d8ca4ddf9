from __future__ import annotations

import random

from airflow_jobforge.config import JobConfiguration, parse_configuration
from airflow_jobforge.config.graph import topological_order
from airflow_jobforge.planning.planner import BatchPlan, plan_batches


def config(jobs, groups=None) -> JobConfiguration:
    return parse_configuration({"jobs": jobs, "submission_groups": groups or []})


def group(name, **batching):
    return {"name": name, "batching": batching, "slurm": {"walltime": "1:00:00"}}


def job(name, **kw):
    return {"name": name, "command": "true", **kw}


def assert_plan_is_sound(cfg: JobConfiguration, plan: BatchPlan) -> None:
    """Every job in one batch of its group; blockers in the same batch or a batch before."""
    seen = [j for b in plan.batches for j in b.jobs]
    assert sorted(seen) == sorted(j.name for j in cfg.jobs)
    batches = {b.name: b for b in plan.batches}
    for j in cfg.jobs:
        batch = batches[plan.batch_of[j.name]]
        assert batch.group == j.submission_group
        for blocker in j.blocked_by:
            other = plan.batch_of[blocker]
            assert other == batch.name or other in batch.depends_on
    order = topological_order(list(batches), {b.name: b.depends_on for b in plan.batches})
    assert len(order) == len(batches), "batch dependencies have a cycle"


def test_count_based_batches_fill_in_config_order():
    cfg = config([job(f"j{i}") for i in range(7)], [group("g", per_node_batch_size=3)])
    plan = plan_batches(cfg)
    assert [b.jobs for b in plan.batches] == [("j0", "j1", "j2"), ("j3", "j4", "j5"), ("j6",)]
    assert [b.name for b in plan.batches] == ["g-0000", "g-0001", "g-0002"]


def test_a_batch_never_mixes_groups():
    cfg = config(
        [job(f"j{i}", submission_group="a" if i % 2 else "b") for i in range(10)],
        [group("a", per_node_batch_size=100), group("b", per_node_batch_size=100)],
    )
    plan = plan_batches(cfg)
    assert {b.group: len(b.jobs) for b in plan.batches} == {"a": 5, "b": 5}


def test_time_based_batches_fill_walltime_times_processes():
    # capacity 60 min x 2 processes = 120 minutes of estimates per batch
    cfg = config(
        [job(f"j{i}", estimated_run_minutes=50) for i in range(5)],
        [group("g", time_based_batching=True, num_processes=2)],
    )
    plan = plan_batches(cfg)
    assert [len(b.jobs) for b in plan.batches] == [2, 2, 1]


def test_blocked_job_joins_its_blockers_batch_when_try_add_blocked_jobs():
    cfg = config(
        [job("a"), job("b", blocked_by=["a"]), job("c", blocked_by=["b"])],
        [group("g", per_node_batch_size=10)],
    )
    plan = plan_batches(cfg)
    assert [b.jobs for b in plan.batches] == [("a", "b", "c")]


def test_blocked_job_goes_to_a_later_batch_without_try_add_blocked_jobs():
    cfg = config(
        [job("a"), job("x"), job("b", blocked_by=["a"])],
        [group("g", per_node_batch_size=10, try_add_blocked_jobs=False)],
    )
    plan = plan_batches(cfg)
    assert [(b.jobs, b.depends_on) for b in plan.batches] == [
        (("a", "x"), ()),
        (("b",), ("g-0000",)),
    ]


def test_jobs_are_ordered_after_their_blockers_even_when_listed_before():
    cfg = config([job("b", blocked_by=["a"]), job("a")], [group("g", per_node_batch_size=1)])
    plan = plan_batches(cfg)
    assert [b.jobs for b in plan.batches] == [("a",), ("b",)]
    assert plan.batches[1].depends_on == ("g-0000",)


def test_cross_group_dependencies_never_make_a_batch_cycle():
    # a1 (A) -> b1 (B) -> a2 (A): a2 may not join a1's batch, or A and B would wait on each other
    cfg = config(
        [
            job("a1", submission_group="A"),
            job("b1", submission_group="B", blocked_by=["a1"]),
            job("a2", submission_group="A", blocked_by=["b1"]),
        ],
        [group("A", per_node_batch_size=10), group("B", per_node_batch_size=10)],
    )
    plan = plan_batches(cfg)
    assert_plan_is_sound(cfg, plan)
    assert plan.batch_of["a1"] != plan.batch_of["a2"]


def test_random_dependency_graphs_give_sound_plans():
    rng = random.Random(7)
    for _ in range(30):
        n = rng.randint(1, 60)
        jobs = []
        for i in range(n):
            blockers = rng.sample([f"j{k}" for k in range(i)], k=min(i, rng.randint(0, 3)))
            jobs.append(
                job(
                    f"j{i}",
                    blocked_by=blockers,
                    submission_group=rng.choice("ABC"),
                    estimated_run_minutes=rng.randint(1, 60),
                )
            )
        rng.shuffle(jobs)
        groups = [
            group("A", per_node_batch_size=rng.randint(1, 8)),
            group("B", per_node_batch_size=rng.randint(1, 8), try_add_blocked_jobs=False),
            group("C", time_based_batching=True, num_processes=rng.randint(1, 3)),
        ]
        cfg = config(jobs, groups)
        plan = plan_batches(cfg)
        assert_plan_is_sound(cfg, plan)
        assert plan == plan_batches(cfg), "planning must be deterministic"


def test_only_plans_a_subset_and_treats_outside_blockers_as_done():
    cfg = config([job("a"), job("b", blocked_by=["a"]), job("c")], [group("g")])
    plan = plan_batches(cfg, only=["b", "c"])
    assert [b.jobs for b in plan.batches] == [("b", "c")]
    assert plan.batches[0].depends_on == ()
