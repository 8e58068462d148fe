"""Which node types a set of workflows uses, and which of them an n8n has not loaded.

A workflow whose node type (or type version) is not loaded opens in the editor with "?" nodes
and cannot run, although n8n serves its JSON: the node types are checked against the list the
running n8n gives its editor (``/types/nodes.json``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from backup.errors import N8nCheckError
from backup.n8n.tables import WorkflowRow

TYPES_PATH = "/types/nodes.json"
MAX_NAMED_WORKFLOWS = 5


@dataclass(frozen=True, order=True)
class NodeType:
    """A node type at one type version, as a workflow's node names it."""

    name: str
    version: float

    def __str__(self) -> str:
        version = int(self.version) if self.version == int(self.version) else self.version
        return f"{self.name} v{version}"


@dataclass
class NodeTypeUse:
    """The node types used by a set of workflows, with the workflows that use each."""

    by_type: dict[NodeType, list[str]] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        """The distinct type names, all versions together."""
        return {node_type.name for node_type in self.by_type}

    def missing(self, loaded: dict[str, set[float]]) -> list[str]:
        """One problem per used type (and version) that ``loaded`` lacks, naming its workflows."""
        problems = []
        for node_type, workflows in sorted(self.by_type.items()):
            versions = loaded.get(node_type.name)
            if versions is not None and node_type.version in versions:
                continue
            what = "not installed" if versions is None else "this version is not loaded"
            shown = ", ".join(workflows[:MAX_NAMED_WORKFLOWS])
            more = len(workflows) - MAX_NAMED_WORKFLOWS
            problems.append(
                f"{node_type} ({what}) used by {shown}" + (f" and {more} more" if more > 0 else "")
            )
        return problems


def _version(value: Any) -> float | None:
    if value is None:
        return 1.0  # n8n's default when a node gives no typeVersion
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def used_node_types(workflows: Iterable[WorkflowRow]) -> NodeTypeUse:
    """Every node type and version the workflows' nodes use."""
    use = NodeTypeUse()
    for workflow in workflows:
        label = f"{workflow.id} ({workflow.name!r})"
        nodes = workflow.nodes if isinstance(workflow.nodes, list) else []
        for node in nodes:
            if not isinstance(node, dict) or not isinstance(node.get("type"), str):
                continue
            version = _version(node.get("typeVersion"))
            if version is None:
                continue
            users = use.by_type.setdefault(NodeType(node["type"], version), [])
            if label not in users:
                users.append(label)
    return use


def loaded_node_types(listing: Any) -> dict[str, set[float]]:
    """Type name -> loaded versions, from n8n's ``/types/nodes.json`` answer.

    Raises N8nCheckError when the answer is not a list of node descriptions.
    """
    if not isinstance(listing, list):
        raise N8nCheckError(f"{TYPES_PATH} did not answer a list of node types")
    loaded: dict[str, set[float]] = {}
    for item in listing:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise N8nCheckError(f"{TYPES_PATH} lists an entry that is not a node type")
        raw = item.get("version")
        versions = raw if isinstance(raw, list) else [raw]
        known = loaded.setdefault(item["name"], set())
        known.update(v for v in map(_version, versions) if v is not None)
    return loaded
