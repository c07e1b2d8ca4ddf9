"""Node lists: SLURM's hostlist expressions, which nodes a job had, and the `--exclude` of a
batch resubmitted after a node failure (outputs recorded on the multi-node test cluster)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from airflow_jobforge.config import SlurmParams
from airflow_jobforge.slurm.client import SlurmClient
from airflow_jobforge.slurm.nodelist import (
    NODE_FAILURE_STATES,
    excluded_nodes,
    excluding,
    expand_hostlist,
)
from airflow_jobforge.slurm.script import sbatch_options
from airflow_jobforge.slurm.transport import CommandResult

FIXTURES = Path(__file__).parent.parent / "fixtures" / "slurm_nodes"


def rec(name: str) -> str:
    return (FIXTURES / name).read_text()


class Replay:
    """Answers each command by its program name, in order; remembers what ran."""

    def __init__(self, answers: dict[str, list[tuple[int, str, str]]]) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, input=None, timeout=None) -> CommandResult:
        self.calls.append(tuple(argv))
        rc, out, err = self.answers[argv[0]].pop(0)
        return CommandResult(tuple(argv), rc, out, err)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("jf-n2", ["jf-n2"]),
        ("jf-n[2-3]", ["jf-n2", "jf-n3"]),
        ("jf-n[1-2,5],login", ["jf-n1", "jf-n2", "jf-n5", "login"]),
        ("gpu[08-10]", ["gpu08", "gpu09", "gpu10"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("a,a", ["a"]),
    ],
)
def test_hostlist_expressions_expand_as_scontrol_show_hostnames_does(text, names):
    assert expand_hostlist(text) == names


@pytest.mark.parametrize("text", ["n[1-", "n[a-b]", "n;rm", "-x", "n[1-999999999]"])
def test_a_node_list_that_is_no_list_of_node_names_is_refused(text):
    with pytest.raises(ValueError):
        expand_hostlist(text)


def test_the_nodes_of_a_job_come_from_squeue_while_the_controller_holds_it():
    replay = Replay({"squeue": [(0, rec("squeue_two_nodes.txt"), "")] * 2})
    client = SlurmClient(replay)
    assert client.job_nodes("7690") == ["jf-n1", "jf-n2"]
    assert [c[0] for c in replay.calls] == ["squeue"]
    assert client.job_nodes("7690", NODE_FAILURE_STATES) == [], "it did not fail"


def test_the_nodes_of_a_job_the_controller_forgot_come_from_sacct():
    replay = Replay(
        {
            "squeue": [(1, "", rec("squeue_unknown.err"))],
            "sacct": [(0, rec("sacct_node_fail.txt"), "")],
        }
    )
    assert SlurmClient(replay).job_nodes("7636", NODE_FAILURE_STATES) == ["jf-n1"]


def test_a_job_that_never_ran_had_no_nodes():
    replay = Replay({"squeue": [(0, "\n", "")], "sacct": [(0, rec("sacct_never_ran.txt"), "")]})
    assert SlurmClient(replay).job_nodes("7691") == []


def test_partition_nodes_are_those_of_the_named_or_the_default_partition():
    answer = (0, rec("sinfo_partitions.txt"), "")
    client = SlurmClient(Replay({"sinfo": [answer, answer, answer]}))
    assert client.partition_nodes("multi") == ["jf-n1", "jf-n2", "jf-n3"]
    assert client.partition_nodes(None) == ["vm"]
    assert client.partition_nodes("nosuch") == []


MULTI = ["jf-n1", "jf-n2", "jf-n3"]


def test_a_resubmission_excludes_the_failed_node_and_keeps_the_groups_own_exclusions():
    slurm = SlurmParams(partition="multi", extra=("--exclusive", "--exclude=jf-n1"))
    again, new = excluding(slurm, ["jf-n2"], MULTI)
    assert new == ["jf-n2"]
    assert excluded_nodes(again) == ["jf-n1", "jf-n2"]
    assert sbatch_options(again)[-2:] == ["--exclusive", "--exclude=jf-n1,jf-n2"]


def test_no_exclusion_when_the_partition_would_have_too_few_nodes_left():
    two_nodes = SlurmParams(partition="multi", nodes=2)
    assert excluding(two_nodes, ["jf-n2", "jf-n3"], MULTI) == (two_nodes, [])
    assert excluding(two_nodes, ["jf-n2"], MULTI)[1] == ["jf-n2"]
    one = SlurmParams(partition="debug")
    assert excluding(one, ["vm"], ["vm"]) == (one, [])


def test_nothing_to_exclude_when_the_job_had_no_node_or_it_is_excluded_already():
    slurm = SlurmParams(partition="multi", extra=("--exclude=jf-n2",))
    assert excluding(slurm, [], MULTI) == (slurm, [])
    assert excluding(slurm, ["jf-n2"], MULTI) == (slurm, [])
