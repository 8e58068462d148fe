"""What an upgrade's migrations changed in each workflow, in words an operator understands.

Compares a workflow as the snapshot holds it with the same workflow after the target version's
migrations ran on the restored copy. Only names are ever reported (nodes, parameter keys),
never a value: parameters may hold secrets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from backup.n8n.tables import WorkflowRow

ACTIVATED = "activated by the migration (sub-workflow published); deactivated again before start"
MAX_KEYS = 5


def _nodes_by_name(nodes: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(nodes, list):
        return {}
    return {
        str(node.get("name")): node
        for node in nodes
        if isinstance(node, dict) and node.get("name") is not None
    }


def _changed_keys(before: Any, after: Any) -> list[str]:
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def _keys_text(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS])
    return shown + (f" and {len(keys) - MAX_KEYS} more" if len(keys) > MAX_KEYS else "")


def node_changes(before: dict[str, Any], after: dict[str, Any], name: str) -> list[str]:
    """How one node (matched by name) changed: disabled, type, version, parameters."""
    changes = []
    if bool(before.get("disabled")) != bool(after.get("disabled")):
        changes.append(f"node '{name}' {'disabled' if after.get('disabled') else 'enabled'}")
    if before.get("type") != after.get("type"):
        changes.append(f"node '{name}' type {before.get('type')} -> {after.get('type')}")
    if before.get("typeVersion") != after.get("typeVersion"):
        changes.append(
            f"node '{name}' version {before.get('typeVersion')} -> {after.get('typeVersion')}"
        )
    keys = _changed_keys(before.get("parameters"), after.get("parameters"))
    if keys:
        changes.append(f"node '{name}' parameters changed: {_keys_text(keys)}")
    others = [
        key
        for key in _changed_keys(before, after)
        if key not in {"disabled", "type", "typeVersion", "parameters"}
    ]
    if others:
        changes.append(f"node '{name}' changed: {_keys_text(others)}")
    return changes


def workflow_changes(source: WorkflowRow, migrated: WorkflowRow) -> list[str]:
    """Every change from ``source`` to ``migrated`` (same workflow id), node by node."""
    old, new = _nodes_by_name(source.nodes), _nodes_by_name(migrated.nodes)
    changes = [f"node '{name}' removed" for name in sorted(old.keys() - new.keys())]
    changes += [f"node '{name}' added" for name in sorted(new.keys() - old.keys())]
    for name in sorted(old.keys() & new.keys()):
        changes += node_changes(old[name], new[name], name)
    if source.connections != migrated.connections:
        changes.append("connections changed")
    return changes


def upgrade_changes(
    source: Iterable[WorkflowRow], migrated: Iterable[WorkflowRow], activated: Iterable[str]
) -> dict[str, list[str]]:
    """Changes per workflow, keyed "id (name)"; workflows the migration activated say so first.
    A workflow the migrations removed is reported as such; unchanged ones are left out."""
    after = {row.id: row for row in migrated}
    activated_ids = set(activated)
    changes: dict[str, list[str]] = {}
    for row in source:
        found = after.get(row.id)
        said = [ACTIVATED] if row.id in activated_ids else []
        said += ["removed by the migration"] if found is None else workflow_changes(row, found)
        if said:
            changes[f"{row.id} ({row.name})"] = said
    return changes
