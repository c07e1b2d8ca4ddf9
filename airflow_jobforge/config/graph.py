"""Dependency-graph algorithms over job names, shared by validation and planning.

Iterative everywhere: a 100,000-job chain must not hit Python's recursion limit.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


def topological_order(order: Sequence[str], blockers: Mapping[str, Sequence[str]]) -> list[str]:
    """Jobs so that each comes after its blockers, otherwise in their original order.

    Ties are broken by original position, so the result is deterministic and as close to the
    user's order as the dependencies allow. Names in a cycle are left out (see `find_cycles`);
    blockers not in `order` are ignored.
    """
    position = {name: i for i, name in enumerate(order)}
    waiting: dict[str, int] = {}
    dependants: dict[str, list[str]] = {}
    for name in order:
        known = [b for b in set(blockers.get(name, ())) if b in position]
        waiting[name] = len(known)
        for b in known:
            dependants.setdefault(b, []).append(name)
    heap = [position[n] for n in order if waiting[n] == 0]
    heapq.heapify(heap)
    result: list[str] = []
    while heap:
        name = order[heapq.heappop(heap)]
        result.append(name)
        for d in dependants.get(name, ()):
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(heap, position[d])
    return result


def find_cycles(order: Sequence[str], blockers: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """One cycle path per cycle found, each as [a, b, ..., a] where each is blocked by the next.

    Jobs left after a topological sort are in a cycle or blocked by one; from each we follow a
    blocker that is also left until a name repeats, which closes a cycle. Walks that reach an
    already reported part stop there, so each cycle is reported once.
    """
    sorted_names = set(topological_order(order, blockers))
    left = [n for n in order if n not in sorted_names]
    left_set = set(left)
    seen: set[str] = set()
    cycles: list[list[str]] = []
    for start in left:
        if start in seen:
            continue
        path: list[str] = []
        index: dict[str, int] = {}
        node = start
        while node not in seen and node not in index:
            index[node] = len(path)
            path.append(node)
            node = next(b for b in blockers.get(node, ()) if b in left_set)
        if node in index:
            cycle = path[index[node] :]
            cycles.append([*cycle, node])
        seen.update(path)
    return cycles
