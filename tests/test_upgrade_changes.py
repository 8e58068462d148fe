"""The words an upgrade report uses for what migrations changed (no n8n needed)."""

from __future__ import annotations

from typing import Any

from backup.n8n.tables import WorkflowRow
from verify.upgrade import ACTIVATED, upgrade_changes


def row(workflow_id: str, nodes: list[dict[str, Any]], connections: Any = None) -> WorkflowRow:
    return WorkflowRow(workflow_id, f"Workflow {workflow_id}", False, nodes, connections or {})


TRIGGER = {"name": "Manual", "type": "n8n-nodes-base.manualTrigger", "typeVersion": 1}
CALLED = {"name": "Called", "type": "n8n-nodes-base.executeWorkflowTrigger", "typeVersion": 1}
SECRET_PARAMETERS = {"url": "https://x", "token": "s3cr3t-value"}


def test_each_kind_of_change_in_words_and_no_values() -> None:
    before = [
        row("a", [TRIGGER, CALLED]),
        row("b", [{**CALLED, "parameters": SECRET_PARAMETERS}]),
        row("c", [TRIGGER]),
        row("d", [TRIGGER]),
        row("e", [TRIGGER]),
    ]
    after = [
        row("a", [{**TRIGGER, "disabled": True}, CALLED]),
        row(
            "b", [{**CALLED, "typeVersion": 1.1, "parameters": {**SECRET_PARAMETERS, "token": "x"}}]
        ),
        row("c", [TRIGGER, {"name": "New", "type": "n8n-nodes-base.noOp"}], {"Manual": {}}),
        row("e", [TRIGGER]),
    ]
    changes = upgrade_changes(before, after, activated=["a", "b"])
    assert changes == {
        "a (Workflow a)": [ACTIVATED, "node 'Manual' disabled"],
        "b (Workflow b)": [
            ACTIVATED,
            "node 'Called' version 1 -> 1.1",
            "node 'Called' parameters changed: token",
        ],
        "c (Workflow c)": ["node 'New' added", "connections changed"],
        "d (Workflow d)": ["removed by the migration"],
    }
    assert "s3cr3t" not in repr(changes)


def test_an_upgrade_that_changes_nothing_says_nothing() -> None:
    rows = [row("a", [TRIGGER])]
    assert upgrade_changes(rows, rows, activated=[]) == {}
