"""Stage 2's generator: writes the `aggregate` stage's config from what `simulate` left.

jobforge runs it when the stage starts, in the pipeline run dir, with the stage's
environment: JOBFORGE_PREVIOUS_STAGE_DIR is simulate's run dir (its jobs wrote data/*.txt
there), JOBFORGE_STAGE_CONFIG is where the config must go. Any generator works the same
way, in any language: read the earlier stages' outputs, write a config, exit 0.

One job per data file (`square_<point>`), and `summarize`, blocked by all of them. Batches
of two jobs: summarize lands in a batch of its own, which waits for the others' batches.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

data = Path(os.environ["JOBFORGE_PREVIOUS_STAGE_DIR"]) / "data"
points = sorted(data.glob("point_*.txt"))
if not points:
    raise SystemExit(f"no point_*.txt in {data}: did the simulate stage write any?")

jobs = []
for path in points:
    # A job's command is run by bash on the node; quote the paths put into it.
    jobs.append(
        {
            "name": f"square_{path.stem}",
            "command": (
                'mkdir -p "$JOBFORGE_OUTPUT_DIR/squares" && '
                f'cut -d " " -f 2 {shlex.quote(str(path))} '
                f'> "$JOBFORGE_OUTPUT_DIR/squares/{path.stem}.txt"'
            ),
        }
    )
jobs.append(
    {
        "name": "summarize",
        "command": (
            'cat "$JOBFORGE_OUTPUT_DIR"/squares/*.txt '
            "| awk '{ s += $1 } END { print \"sum of squares:\", s }' "
            '| tee "$JOBFORGE_OUTPUT_DIR/summary.txt"'
        ),
        "blocked_by": [job["name"] for job in jobs],
    }
)
config = {
    "format_version": "1.0",
    "jobs": jobs,
    "submission_groups": [
        {
            "name": "default",
            "slurm": {"walltime": "0:10:00"},
            "batching": {"per_node_batch_size": 2, "num_processes": 2},
        }
    ],
}
with open(os.environ["JOBFORGE_STAGE_CONFIG"], "w", encoding="utf-8") as out:
    json.dump(config, out, indent=1)
print(f"stage {os.environ['JOBFORGE_STAGE_NAME']}: {len(jobs)} jobs from {len(points)} points")
