"""The resource monitor's samples: where they live and how they are read.

The node runner's monitor (`airflow_jobforge.node.monitor`) appends one JSON line per sample
and subject to `<run dir>/monitor/<batch>.jsonl`, a file per batch for the reason records have
one (O_APPEND is not atomic between hosts on NFS). Two kinds of lines:

- `{"kind": "node", "t", "batch", "host", "hpc_job_id", "cpu_pct" (0..100 of the whole
  node), "ncpus", "mem_used_bytes", "mem_total_bytes", "disk_read_bps", "disk_write_bps",
  "net_rx_bps", "net_tx_bps"}`
- `{"kind": "job", "t", "batch", "job", "host", "cpu_pct" (of ONE cpu: a job busy on 4 cores
  shows 400), "rss_bytes" (sum over the job's processes), "peak_rss_bytes" (highest sampled
  rss_bytes so far), "read_bytes", "write_bytes" (storage I/O since the job started, as
  /proc/<pid>/io counts it), "nprocs"}`

`t` is epoch seconds. Lines may gain keys; readers must ignore the ones they do not know.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MONITOR_DIR = "monitor"


def monitor_file(run_dir: str | os.PathLike[str], batch: str) -> Path:
    return Path(run_dir) / MONITOR_DIR / f"{batch}.jsonl"


def read_monitor_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One batch's samples in file order; a torn last line (no newline) or a corrupt one is
    skipped, as for result records."""
    samples: list[dict[str, Any]] = []
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return samples
    with handle:
        for line in handle:
            if not line.endswith("\n"):
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(data, dict)
                and data.get("kind") in ("node", "job")
                and isinstance(data.get("t"), (int, float))
            ):
                samples.append(data)
    return samples


def read_monitor(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every batch's samples of a run, in time order (a run's batches may overlap in time)."""
    samples: list[dict[str, Any]] = []
    for path in sorted((Path(run_dir) / MONITOR_DIR).glob("*.jsonl")):
        samples.extend(read_monitor_file(path))
    samples.sort(key=lambda s: s["t"])
    return samples
