"""SLURM node lists: a hostlist expression (`jf-n[1-3],login`) as node names, and the sbatch
options of a batch resubmitted after a node failure, without the node that failed.

SLURM may hand a resubmitted batch the very node that just failed (ReturnToService brings
it back as soon as its slurmd registers, broken or not), so a resubmission after NODE_FAIL
or BOOT_FAIL says `--exclude=<the failed job's nodes>`: the retry runs elsewhere. Unless that
leaves the partition too few nodes for the batch, in which case the batch waits for them as
before rather than being refused by sbatch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from airflow_jobforge.config.models import SlurmParams

NODE_FAILURE_STATES = frozenset({"NODE_FAIL", "BOOT_FAIL"})
EXCLUDE = "--exclude"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
MAX_EXPANDED = 100_000  # a hostlist is text from SLURM; bound what it can make us build


def expand_hostlist(text: str) -> list[str]:
    """`jf-n[1-2,5],gpu[01-02]` -> jf-n1, jf-n2, jf-n5, gpu01, gpu02 (what `scontrol show
    hostnames` prints). A name that is not a plain node name raises ValueError: these names
    go into sbatch's argv."""
    names: list[str] = []
    for item in _split_top_level(text.strip()):
        for name in _expand_item(item):
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} in node list {text!r} is not a node name")
            names.append(name)
            if len(names) > MAX_EXPANDED:
                raise ValueError(f"node list {text[:80]!r}... names too many nodes")
    return list(dict.fromkeys(names))


def _split_top_level(text: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item for item in items if item]


def _expand_item(item: str) -> list[str]:
    """One item with any number of bracketed ranges: r[1-2]n[1-2] -> r1n1, r1n2, r2n1, ..."""
    open_at = item.find("[")
    if open_at < 0:
        return [item]
    close_at = item.find("]", open_at)
    if close_at < 0:
        raise ValueError(f"unbalanced brackets in node list item {item!r}")
    prefix, ranges, rest = item[:open_at], item[open_at + 1 : close_at], item[close_at + 1 :]
    tails = _expand_item(rest)
    out = []
    for part in ranges.split(","):
        m = _RANGE.fullmatch(part)
        if not m:
            raise ValueError(f"{part!r} in node list item {item!r} is not a number range")
        first, last = m.group(1), m.group(2) or m.group(1)
        if int(last) - int(first) > MAX_EXPANDED:
            raise ValueError(f"range {part!r} in node list item {item!r} is too long")
        width = len(first)  # zero padding: gpu[01-02]
        for number in range(int(first), int(last) + 1):
            out.extend(f"{prefix}{number:0{width}d}{tail}" for tail in tails)
    return out


def excluded_nodes(slurm: SlurmParams) -> list[str]:
    """The nodes the group's own `--exclude` names (its `extra` options)."""
    names: list[str] = []
    for option in slurm.extra:
        key, _, value = option.partition("=")
        if key == EXCLUDE and value:
            names.extend(expand_hostlist(value))
    return names


def excluding(
    slurm: SlurmParams, failed: Iterable[str], partition_nodes: Sequence[str]
) -> tuple[SlurmParams, list[str]]:
    """`slurm` with `--exclude` naming the `failed` nodes (and those the group excluded
    already), and the failed nodes newly excluded; `slurm` unchanged and [] when nothing
    new is excluded or when fewer than `slurm.nodes` nodes of the partition would be left."""
    before = excluded_nodes(slurm)
    new = [n for n in dict.fromkeys(failed) if n not in before]
    for name in new:
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a node name")
    after = set(before) | set(new)
    left = [n for n in partition_nodes if n not in after]
    if not new or len(left) < slurm.nodes:
        return slurm, []
    extra = tuple(o for o in slurm.extra if o.partition("=")[0] != EXCLUDE)
    option = f"{EXCLUDE}={','.join([*before, *new])}"
    return slurm.model_copy(update={"extra": (*extra, option)}), new
