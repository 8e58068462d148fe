"""How missing node types are judged: what a restore breaks fails, what n8n itself lacks is a
note on the same major and a failure across a major upgrade."""

from __future__ import annotations

import pytest

from backup.errors import N8nCheckError
from backup.n8n.node_types import loaded_node_types, used_node_types
from backup.n8n.tables import WorkflowRow


def _workflow(workflow_id: str, *nodes: tuple[str, object]) -> WorkflowRow:
    return WorkflowRow(
        workflow_id,
        f"Workflow {workflow_id}",
        False,
        [{"type": kind, "typeVersion": version} for kind, version in nodes],
        {},
    )


LOADED = loaded_node_types(
    [
        {"name": "n8n-nodes-base.httpRequest", "version": [3, 4, 4.1]},
        {"name": "n8n-nodes-base.httpRequest", "version": 2},
        {"name": "n8n-nodes-base.noOp", "version": 1},
        {"name": "CUSTOM.rvProbe", "version": [1, 2]},
    ]
)


def test_loaded_versions_merge_every_description() -> None:
    assert LOADED.versions["n8n-nodes-base.httpRequest"] == {2.0, 3.0, 4.0, 4.1}
    assert LOADED.descriptions["n8n-nodes-base.httpRequest"] == 2


@pytest.mark.parametrize("same_major", [True, False])
def test_each_kind_of_missing_node(same_major: bool) -> None:
    use = used_node_types(
        [
            _workflow("a", ("n8n-nodes-base.httpRequest", 4.1), ("n8n-nodes-base.noOp", None)),
            _workflow("b", ("n8n-nodes-base.httpRequest", 9), ("n8n-nodes-base.noOp", 1.6)),
            _workflow("c", ("n8n-nodes-base.start", 1), ("n8n-nodes-community.thing", 1)),
            _workflow("d", ("CUSTOM.rvProbe", 3), ("n8n-nodes-community.thing", 1)),
        ]
    )
    found = use.findings(LOADED, same_major=same_major)
    failures = " | ".join(found.failures)
    notes = " | ".join(found.notes)
    # A community node the restore did not bring back fails, naming both workflows.
    assert "n8n-nodes-community.thing v1 (not installed) used by c ('Workflow c'), d (" in failures
    # An unknown version of a node with several implementations: n8n cannot pick one.
    http_v9 = "n8n-nodes-base.httpRequest v9 (this type version is not loaded"
    assert (http_v9 in notes) is same_major and (http_v9 in failures) is not same_major
    # One implementation: n8n runs it whatever the version says.
    assert "n8n-nodes-base.noOp v1.6" in notes and "CUSTOM.rvProbe v3" in notes
    # A built-in node this n8n lacks: was missing on the source too, or broken by the upgrade.
    start = "n8n-nodes-base.start v1 (not in this n8n"
    assert (start in notes) is same_major and (start in failures) is not same_major
    assert "v4.1" not in failures + notes and "noOp v1 " not in failures + notes


def test_an_answer_that_is_not_a_node_list_is_refused() -> None:
    with pytest.raises(N8nCheckError, match="did not answer a list"):
        loaded_node_types({"data": []})
    with pytest.raises(N8nCheckError, match="not a node type"):
        loaded_node_types([{"version": 1}])
