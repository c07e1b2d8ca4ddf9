"""What the dag-processor makes of a folder of configs with a broken one in it."""

from __future__ import annotations

import pytest

from .workload import BROKEN, ERRORS_FILE, dag_ids

pytestmark = pytest.mark.deployment


def test_a_broken_config_is_an_import_error_and_hides_none_of_the_good_dags(
    deployment, workload
):
    errors = [e for e in deployment.import_errors() if e["filename"].endswith(ERRORS_FILE)]
    assert len(errors) == 1, deployment.import_errors()
    text = errors[0]["stack_trace"]
    assert "deploy_broken.json" in text
    assert "nope" in text, "the unknown blocker is named"
    assert "cycle" in text.lower(), "the dependency cycle is named"
    others = [e for e in deployment.import_errors() if not e["filename"].endswith(ERRORS_FILE)]
    assert not others, "no other file has an import error"

    broken = deployment.dag(BROKEN)
    assert broken is not None and not broken["is_stale"]
    assert "BROKEN CONFIG" in (broken.get("description") or "")
    for dag_id in dag_ids():
        dag = deployment.dag(dag_id)
        assert dag is not None and not dag["is_stale"], f"{dag_id} is hidden"
