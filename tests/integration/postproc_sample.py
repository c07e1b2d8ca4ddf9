"""A job post-process class as users write them: writes one file per successful job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class WriteFile:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def run(self, job_name: str, result: dict[str, Any], output_dir: str) -> str:
        path = Path(output_dir) / f"post-{job_name}.json"
        path.write_text(json.dumps({"return_code": result["return_code"], **self.data}))
        return str(path)
