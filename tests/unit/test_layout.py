"""The house's rules, checked on the source: rooms (the package's sub-packages) import each
other without a cycle, also through imports inside functions (they are how a cycle hides),
and the rooms that run without Airflow import none of it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import airflow_jobforge

PACKAGE = Path(airflow_jobforge.__file__).parent
# Rooms that run on compute nodes, in `jobforge` commands before Airflow's home is set, or
# are pure planning/rendering: an Airflow import there costs seconds or breaks the node.
NO_AIRFLOW = (
    "config",
    "planning",
    "node",
    "slurm",
    "rundir",
    "local",
    "results",
    "extensions",
    "containers",
)
# Below everything: what each room may build on.
FOUNDATION = ("errors", "__init__")


def room_of(module: str) -> str:
    """`airflow_jobforge.slurm.client` -> `slurm`; a module at the package root is a room."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every module `path` imports, anywhere in it, with the line."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            yield base, node.lineno
            for alias in node.names:  # `from airflow_jobforge.dag import factory`
                yield f"{base}.{alias.name}", node.lineno


def room_edges() -> dict[tuple[str, str], str]:
    """(importing room, imported room) -> where it first happens."""
    edges: dict[tuple[str, str], str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        here = room_of(module.removesuffix(".__init__"))
        for name, line in imports(path):
            if not name.startswith("airflow_jobforge.") or not _exists(name):
                continue
            there = room_of(name)
            if there != here and there not in FOUNDATION:
                edges.setdefault((here, there), f"{path.relative_to(PACKAGE.parent)}:{line}")
    return edges


def _exists(module: str) -> bool:
    """A module or package of ours (not a name imported from one)."""
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative).is_dir()


def find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_rooms_import_each_other_without_a_cycle():
    edges = room_edges()
    cycle = find_cycle(set(edges))
    assert cycle is None, (
        "import cycle between rooms: "
        + " -> ".join(cycle)
        + "\n"
        + "\n".join(
            f"  {a} -> {b}: {edges[(a, b)]}" for a, b in zip(cycle, cycle[1:], strict=False)
        )
    )


def test_the_cycle_check_finds_a_cycle_through_several_rooms():
    assert find_cycle({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == ["a", "b", "c", "a"]
    assert find_cycle({("a", "b"), ("b", "c"), ("a", "c")}) is None


def test_what_a_run_leaves_on_disk_sits_below_slurm_node_and_results():
    edges = room_edges()
    above = {"slurm", "node", "results", "local", "dag", "operators", "sensors", "triggers"}
    wrong = {
        edge: where for edge, where in edges.items() if edge[0] == "rundir" and edge[1] in above
    }
    assert not wrong
    assert ("results", "rundir") in edges and ("slurm", "rundir") in edges


def test_rooms_without_airflow_import_none_of_it():
    found = []
    for room in NO_AIRFLOW:
        for path in sorted((PACKAGE / room).rglob("*.py")):
            for name, line in imports(path):
                if name == "airflow" or name.startswith("airflow."):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not found, "\n".join(found)
