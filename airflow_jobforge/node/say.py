"""The node's messages to its user: the runner's and the resource monitor's."""

from __future__ import annotations

import sys


def say(message: str) -> None:
    """stderr is the batch's SLURM log; it may be on the same full disk, so never raise."""
    try:
        print(f"jobforge node runner: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass
