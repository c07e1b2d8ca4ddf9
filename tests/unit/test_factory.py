"""DAG shape built by the factory (no metadata DB needed)."""

from __future__ import annotations

import json

import pytest

from airflow_jobforge.config import parse_configuration
from airflow_jobforge.dag.factory import JobForgeTaskGroup, build_dag
from airflow_jobforge.dag.loading import load_dags
from airflow_jobforge.errors import ConfigError, JobForgeError
from airflow_jobforge.planning.selection import selected
from airflow_jobforge.rundir.batches import BatchSpec, JobSpec, restrict_batch
from airflow_jobforge.rundir.manifest import safe_run_id
from airflow_jobforge.slurm.resources import apply_overrides
from airflow_jobforge.slurm.tags import run_key

THREE_GROUPS = {
    "jobs": [
        {"name": "prep", "command": "echo prep", "submission_group": "a"},
        {"name": "a2", "command": "true", "submission_group": "a"},
        {"name": "a3", "command": "true", "submission_group": "a"},
        {"name": "sim1", "command": "exit 3", "submission_group": "b", "blocked_by": ["prep"]},
        {"name": "sim2", "command": "true", "submission_group": "b", "blocked_by": ["prep"]},
        {
            "name": "post1",
            "command": "true",
            "submission_group": "c",
            "blocked_by": ["sim1"],
            "cancel_on_blocking_job_failure": True,
        },
        {"name": "post2", "command": "true", "submission_group": "c", "blocked_by": ["sim1"]},
    ],
    "submission_groups": [
        {"name": "a", "batching": {"per_node_batch_size": 2}},
        {"name": "b", "batching": {"per_node_batch_size": 1, "job_arrays": False}},
        {"name": "c", "batching": {"per_node_batch_size": 10}},
    ],
    "setup_command": "echo setup",
    "teardown_command": "echo teardown",
    "job_post_process_config": {"module": "m", "class": "C", "data": {"k": 1}},
}


def config(data=None, **extra):
    return parse_configuration({**(data or THREE_GROUPS), **extra})


def test_batches_become_submit_wait_and_jobs_in_a_group_per_submission_group():
    dag = build_dag(config(), "d", output_dir="/tmp/o")
    ids = set(dag.task_dict)
    assert {
        "a.submit_0000",
        "a.wait_0000",
        "a.submit_0001",
        "b.submit_0000",
        "b.submit_0001",
        "c.submit_0000",
        "setup",
        "teardown",
        "summary",
    } <= ids
    assert {"a.job_prep", "b.job_sim1", "c.job_post1", "c.post_post1"} <= ids
    assert dag.task_dict["a.submit_0000"].downstream_task_ids == {"a.wait_0000"}
    assert "a.job_prep" in dag.task_dict["a.wait_0000"].downstream_task_ids


def test_blocked_by_across_batches_is_wait_to_submit_with_all_done():
    dag = build_dag(config(), "d", output_dir="/tmp/o")
    sim1_submit = dag.task_dict["b.submit_0000"]
    assert "a.wait_0000" in sim1_submit.upstream_task_ids
    assert sim1_submit.trigger_rule == "all_done"
    assert dag.task_dict["a.submit_0000"].upstream_task_ids == {"setup"}
    dag.validate()


def test_job_tasks_and_post_process_run_whatever_upstream_did():
    dag = build_dag(config(), "d", output_dir="/tmp/o")
    job = dag.task_dict["c.job_post1"]
    assert job.trigger_rule == "all_done"
    assert "b.job_sim1" in job.upstream_task_ids, "job dependencies are visible in the graph"
    assert dag.task_dict["c.post_post1"].upstream_task_ids == {"c.job_post1"}


def test_setup_and_teardown_wrap_the_run():
    dag = build_dag(config(), "d", output_dir="/tmp/o")
    assert dag.task_dict["setup"].is_setup and dag.task_dict["teardown"].is_teardown
    assert dag.task_dict["teardown"].upstream_task_ids >= {"summary", "setup"}


def test_each_job_task_documents_its_command_and_group():
    dag = build_dag(config(), "d", output_dir="/tmp/o")
    doc = dag.task_dict["b.job_sim1"].doc_md
    assert "exit 3" in doc and "`b`" in doc


def test_large_configs_get_one_results_task_per_batch():
    jobs = [{"name": f"j{i}", "command": "true"} for i in range(300)]
    dag = build_dag(
        config(
            {
                "jobs": jobs,
                "submission_groups": [{"name": "g", "batching": {"per_node_batch_size": 100}}],
            }
        ),
        "d",
        output_dir="/tmp/o",
    )
    assert sorted(t for t in dag.task_dict if ".results_" in t) == [
        "g.results_0000",
        "g.results_0001",
        "g.results_0002",
    ]
    assert not any(".job_" in t for t in dag.task_dict)
    assert len(dag.task_dict) == 3 * 3 + 1


def test_job_tasks_can_be_forced_either_way():
    many = build_dag(config(), "d", output_dir="/tmp/o", job_tasks=False)
    assert "a.results_0000" in many.task_dict and "a.job_prep" not in many.task_dict
    assert "b.job_sim1" in many.task_dict, "a one-job batch reports as its job"


def test_params_let_a_trigger_override_slurm_fields_and_select_jobs():
    dag = build_dag(config(), "d", output_dir="/tmp/o")
    assert set(dag.params) == {
        "jobs",
        "partition",
        "account",
        "qos",
        "walltime",
        "rerun_of",
        "rerun",
    }


def test_params_are_the_dags_alone_and_still_reach_every_task_at_run_time():
    """A task created under DAG params gets its own copy, which the serialized DAG stores per
    task and Airflow re-validates against its JSON schema on every serialization: ~5 ms a
    task, 1.5 s of each dag-processor parse of a 100-batch DAG. Tasks read them from the DAG."""
    from airflow.sdk.definitions.param import process_params

    from tests.airflow_versions import DagSerialization

    dag = build_dag(config(), "d", output_dir="/tmp/o")
    serialized = DagSerialization.to_dict(dag)["dag"]
    assert {name for name, _ in serialized["params"]} == set(dag.params)
    assert all(not task.params for task in dag.tasks)
    assert all("params" not in t["__var"] for t in serialized["tasks"])
    for task in dag.tasks:
        params = process_params(dag, task, {"partition": "debug"}, suppress_exception=False)
        assert params["partition"] == "debug" and params["rerun"] == ["failed", "missing"]


def test_submit_tasks_carry_their_batch_with_intra_and_external_blockers():
    dag = build_dag(config(), "d", output_dir="/tmp/o")
    batch = BatchSpec.from_dict(dag.task_dict["c.submit_0000"].batch)
    post1 = next(j for j in batch.jobs if j.name == "post1")
    assert post1.external_blockers == ("sim1",) and post1.cancel_on_blocking_job_failure


def test_an_invalid_config_is_refused_by_build_dag():
    bad = parse_configuration({"jobs": [{"name": "a", "command": "x"}]})
    bad.jobs.append(bad.jobs[0])
    with pytest.raises(ConfigError, match="name used by 2 jobs"):
        build_dag(bad, "d", output_dir="/tmp/o")


def test_too_long_task_ids_are_a_config_error():
    long = "x" * 160
    with pytest.raises(ConfigError, match="longer than 250"):
        build_dag(
            config(
                {
                    "jobs": [{"name": long, "command": "true", "submission_group": "g" * 95}],
                    "submission_groups": [{"name": "g" * 95}],
                }
            ),
            "d",
            output_dir="/tmp/o",
        )


def test_ssh_backend_needs_an_absolute_output_dir():
    with pytest.raises(JobForgeError, match="absolute path on the cluster"):
        build_dag(config(), "d", backend="slurm", ssh_conn_id="x", output_dir="rel")


def test_task_group_embeds_a_config_in_your_own_dag():
    from airflow.sdk import DAG

    with DAG("mine", schedule=None) as dag:
        JobForgeTaskGroup("sims", config(), output_dir="/tmp/o")
    assert "sims.a.submit_0000" in dag.task_dict


def test_one_broken_config_never_hides_the_others(tmp_path):
    (tmp_path / "good.json").write_text(json.dumps({"jobs": [{"name": "a", "command": "x"}]}))
    (tmp_path / "bad.json").write_text('{"jobs": [{"name": "a", "command": "x", "blocked_by"')
    (tmp_path / "cycle.json").write_text(
        json.dumps(
            {
                "jobs": [
                    {"name": "a", "command": "x", "blocked_by": ["b"]},
                    {"name": "b", "command": "x", "blocked_by": ["a"]},
                ]
            }
        )
    )
    namespace: dict = {}
    dags = load_dags(tmp_path / "*.json", namespace, output_dir="/tmp/o")
    assert set(dags) == set(namespace) == {"jobforge_good", "jobforge_bad", "jobforge_cycle"}
    assert "g.submit_0000" not in dags["jobforge_good"].task_dict
    assert "default.submit_0000" in dags["jobforge_good"].task_dict
    for broken in ("jobforge_bad", "jobforge_cycle"):
        assert list(dags[broken].task_dict) == ["config_error"]
        assert dags[broken].description.startswith("BROKEN CONFIG")
    assert "dependency cycle: a -> b -> a" in dags["jobforge_cycle"].doc_md


def test_selection_by_names_and_globs():
    assert selected(["a1", "a2", "b1"], ["a*"]) == ["a1", "a2"]
    assert selected(["a1", "b1"], []) == ["a1", "b1"]
    assert selected(["a1", "b1"], ["b1", "zz"]) == ["b1"]


def test_a_rerun_batch_keeps_only_its_jobs_and_external_blockers():
    spec = BatchSpec(
        "g-0000",
        (
            JobSpec("a", "x"),
            JobSpec("b", "y", blocked_by=("a",), cancel_on_blocking_job_failure=True),
        ),
    )
    rerun = restrict_batch(spec, ["b"], "g-0000-rerun2")
    assert rerun.batch == "g-0000-rerun2"
    assert [(j.name, j.blocked_by, j.external_blockers) for j in rerun.jobs] == [("b", (), ("a",))]


def test_overrides_are_validated():
    from airflow_jobforge.config import SlurmParams

    assert (
        apply_overrides(SlurmParams(), {"partition": "other", "walltime": "5"}).partition == "other"
    )
    with pytest.raises(JobForgeError, match="invalid DAG run parameter"):
        apply_overrides(SlurmParams(), {"partition": "x; id"})


def test_run_keys_and_dirs_are_safe_and_stable():
    key = run_key("d", "manual__2026-01-01T00:00:00+00:00")
    assert key == run_key("d", "manual__2026-01-01T00:00:00+00:00") and len(key) == 12
    assert safe_run_id("manual__2026-01-01T00:00:00+00:00") == "manual__2026-01-01T00_00_00_00_00"


def test_a_slurm_connection_is_read_at_run_time_not_at_parse_time(monkeypatch):
    from airflow_jobforge.hooks.slurm import ClusterSettings

    dag = build_dag(config(), "d", backend="slurm", slurm_conn_id="hpc", output_dir="/tmp/o")
    assert dag.task_dict["a.submit_0000"].cluster["slurm_conn_id"] == "hpc"
    monkeypatch.setenv(
        "AIRFLOW_CONN_HPC",
        json.dumps(
            {
                "conn_type": "slurm",
                "extra": {"ssh_conn_id": "login", "partition": "short", "python": "/opt/py"},
            }
        ),
    )
    resolved = ClusterSettings(backend="slurm", slurm_conn_id="hpc", python="/mine").resolved()
    assert (resolved.ssh_conn_id, resolved.partition, resolved.python) == (
        "login",
        "short",
        "/mine",
    )
    assert resolved.resolved() is resolved


def write_configs(folder, names):
    for name in names:
        (folder / f"{name}.json").write_text(
            json.dumps({"jobs": [{"name": "a", "command": f"echo {name}"}]})
        )


def test_a_worker_builds_only_the_dag_it_runs_and_reads_no_other_config(tmp_path, monkeypatch):
    from airflow_jobforge.dag import loading

    write_configs(tmp_path, ["one", "two", "three"])
    rendered = []
    real = loading.render_file
    monkeypatch.setattr(loading, "render_file", lambda p, **kw: rendered.append(p) or real(p, **kw))
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "jobforge_two")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "summary")
    namespace: dict = {}
    dags = load_dags(tmp_path / "*.json", namespace, output_dir="/tmp/o")
    assert set(dags) == set(namespace) == {"jobforge_two"}
    assert rendered == [str(tmp_path / "two.json")]


def test_a_worker_of_another_dag_file_builds_nothing(tmp_path, monkeypatch):
    write_configs(tmp_path, ["one"])
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "someone_elses_dag")
    assert load_dags(tmp_path / "*.json", {}, output_dir="/tmp/o") == {}


def test_without_a_parsing_context_every_config_is_built(tmp_path, monkeypatch):
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    write_configs(tmp_path, ["one", "two"])
    dags = load_dags(tmp_path / "*.json", {}, dag_id_prefix="sims_", output_dir="/tmp/o")
    assert set(dags) == {"sims_one", "sims_two"}


LOADER = """
from airflow_jobforge.dag.loading import load_dags
load_dags({pattern!r}, globals(), output_dir="/tmp/o")
"""
ERRORS = """
# Defines no DAG: Airflow's safe mode parses it because it names "airflow" and "dag".
from airflow_jobforge.dag.loading import raise_config_errors
raise_config_errors({pattern!r})
"""


def test_a_broken_config_is_an_import_error_of_its_own_file_and_hides_no_dag(tmp_path):
    """The dag-processor's view: a real DagBag over a DAGs folder holding the folder loader and
    the error file. Airflow 3 marks every DAG of a file with an import error stale, so the
    error belongs to the file that defines no DAG."""
    from tests.airflow_versions import bundle_dag_bag

    configs = tmp_path / "configs"
    configs.mkdir()
    write_configs(configs, ["good", "other"])
    (configs / "bad.json").write_text(
        json.dumps({"jobs": [{"name": "sim", "command": "x", "blocked_by": ["nowhere"]}]})
    )
    dags_folder = tmp_path / "dags"
    dags_folder.mkdir()
    pattern = str(configs / "*.json")
    (dags_folder / "jobforge_folder.py").write_text(LOADER.format(pattern=pattern))
    (dags_folder / "jobforge_errors.py").write_text(ERRORS.format(pattern=pattern))

    bag = bundle_dag_bag(dags_folder, dags_folder, "dags")

    assert set(bag.dags) == {"jobforge_good", "jobforge_other", "jobforge_bad"}
    broken = bag.dags["jobforge_bad"]
    assert broken.description.startswith("BROKEN CONFIG") and "config-error" in broken.tags
    assert list(bag.import_errors) == ["jobforge_errors.py"]
    error = bag.import_errors["jobforge_errors.py"]
    assert str(configs / "bad.json") in error
    assert "job 'sim'" in error and "blocked by unknown job 'nowhere'" in error


def test_raise_config_errors_is_silent_when_every_config_is_fine(tmp_path):
    from airflow_jobforge.dag.loading import raise_config_errors

    write_configs(tmp_path, ["one"])
    raise_config_errors(tmp_path / "*.json")


def test_bad_loader_options_give_the_placeholder_alone(tmp_path):
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    write_configs(tmp_path, ["one"])
    DagContext.autoregistered_dags.clear()
    DagContext.current_autoregister_module_name = __name__  # as if a DAG file were imported
    try:
        dags = load_dags(tmp_path / "*.json", {}, backend="slurm", ssh_conn_id="x", output_dir="o")
        registered = [dag for dag, _ in DagContext.autoregistered_dags]
    finally:
        DagContext.current_autoregister_module_name = None
        DagContext.autoregistered_dags.clear()
    assert list(dags["jobforge_one"].task_dict) == ["config_error"]
    assert len(registered) == 1 and registered[0] is dags["jobforge_one"], "no half-built twin"


def test_a_worker_builds_only_the_batch_of_the_task_it_runs(monkeypatch):
    """Airflow sets the parsing context for a task's worker: only that batch is built."""
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "d")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "c.wait_0000")
    dag = build_dag(config(), "d", output_dir="/tmp/o")
    assert set(dag.task_dict) == {
        "c.submit_0000",
        "c.wait_0000",
        "c.job_post1",
        "c.job_post2",
        "c.post_post1",
        "c.post_post2",
    }
    assert dag.task_dict["c.job_post1"].upstream_task_ids == {"c.wait_0000"}
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "summary")
    assert set(build_dag(config(), "d", output_dir="/tmp/o").task_dict) == {
        "summary",
        "setup",
        "teardown",
    }
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID")
    assert len(build_dag(config(), "d", output_dir="/tmp/o").task_dict) > 20


def test_a_triggers_echo_names_the_jobs_and_the_submitted_spec_restores_them():
    from airflow_jobforge.slurm.request import job_names_of, restore_request, slim_request

    full = BatchSpec(
        "g-0000",
        (JobSpec("a", "true"), JobSpec("b", "true", blocked_by=("a",)), JobSpec("c", "true")),
    ).to_dict()
    submitted = {"request": {"tag": "t", "batch": full, "output_dir": "/o"}}
    retried = {
        **submitted["request"],
        "batch": restrict_batch(BatchSpec.from_dict(full), ["b", "c"]).to_dict(),
    }
    slim = slim_request(retried)
    assert "jobs" not in slim["batch"] and job_names_of(slim["batch"]) == ["b", "c"]
    assert restore_request(slim, submitted["request"]["batch"]) == retried
    with pytest.raises(JobForgeError, match="neither in the DAG"):
        restore_request(slim, None)


@pytest.mark.parametrize(
    ("task_id", "batch"),
    [
        ("g.submit_0001", "g-0001"),
        ("outer.g.results_0000", "g-0000"),
        ("g.job_x.job_y", "g-0001"),  # job names may hold dots, even ".job_"
        ("outer.g.post_z", "g-0000"),
        ("summary", ""),
        ("g.job_nobody", ""),
    ],
)
def test_a_workers_task_id_names_its_batch(monkeypatch, task_id, batch):
    from airflow_jobforge.dag.factory import _worker_batch
    from airflow_jobforge.dag.render import render_config

    jobs = [{"name": n, "command": "true"} for n in ("z", "x.job_y")]
    render = render_config(
        config(
            {
                "jobs": jobs,
                "submission_groups": [
                    {"name": "g", "batching": {"per_node_batch_size": 1, "job_arrays": False}}
                ],
            }
        ),
        job_tasks=True,
    )
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", task_id)
    assert [b.jobs for b in render.batches] == [("z",), ("x.job_y",)]
    assert _worker_batch(render) == batch


def test_a_dag_files_own_params_join_the_factorys():
    dag = build_dag(config(), "d", output_dir="/tmp/o", params={"note": "x", "qos": "high"})
    assert dag.params["note"] == "x" and dag.params["qos"] == "high" and "rerun_of" in dag.params
