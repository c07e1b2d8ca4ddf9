"""Which try is a user's clear and which an automatic retry: what decides adopt vs rerun."""

from __future__ import annotations

from types import SimpleNamespace

from airflow_jobforge.operators.attempts import attempt
from airflow_jobforge.operators.base import INFRA_RETRIES, context_attempt, with_infra_retries
from airflow_jobforge.slurm.tags import rerun_names


def test_first_run_and_its_automatic_retries_form_one_series():
    # A task instance created with retries R has max_tries R (Airflow's own formula).
    first = attempt(1, max_tries=6, retries=6)
    assert first.first == 1 and not first.is_retry and not first.cleared
    retry = attempt(3, max_tries=6, retries=6)
    assert retry.is_retry and not retry.cleared
    assert list(retry.earlier_in_series()) == [2, 1]


def test_a_clear_starts_a_new_series_whose_retries_point_back_to_it():
    # clear_task_instances sets max_tries = try_number + retries; the next try is the clear.
    cleared = attempt(4, max_tries=3 + 6, retries=6)
    assert cleared.first == 4 and cleared.cleared and not cleared.is_retry
    retry = attempt(6, max_tries=3 + 6, retries=6)
    assert retry.first == 4 and retry.is_retry and list(retry.earlier_in_series()) == [5, 4]


def test_an_unknown_max_tries_counts_as_the_first_series():
    assert attempt(2, max_tries=None, retries=6).first == 1
    assert attempt(2, max_tries=-1, retries=6).first == 1


def test_context_attempt_reads_the_task_instance():
    ti = SimpleNamespace(try_number=2, max_tries=1 + 6)
    assert context_attempt({"ti": ti}, 6).cleared


def test_rerun_tag_depends_on_task_and_cleared_try_not_on_which_jobs_remain():
    a = rerun_names("g-0001", "g.job_a", 4)
    assert a == rerun_names("g-0001", "g.job_a", 4)
    assert a != rerun_names("g-0001", "g.job_b", 4)
    assert a != rerun_names("g-0001", "g.job_a", 5)


def test_infra_retries_yield_to_the_task_and_to_default_args():
    assert with_infra_retries({})["retries"] == INFRA_RETRIES
    assert with_infra_retries({"retries": 1})["retries"] == 1
    given = with_infra_retries({"default_args": {"retries": 0, "retry_delay": 1}})
    assert "retries" not in given and "retry_delay" not in given
    assert given["max_retry_delay"].total_seconds() == 180
