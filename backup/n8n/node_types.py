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


BUILT_IN_PACKAGES = ("n8n-nodes-base.", "@n8n/n8n-nodes-langchain.")


@dataclass(frozen=True)
class LoadedTypes:
    """What an n8n lists for its editor: type name -> versions, and how many descriptions
    give each name (a node with several implementations, one per version, is listed once
    per implementation)."""

    versions: dict[str, set[float]]
    descriptions: dict[str, int]


@dataclass(frozen=True)
class NodeTypeFindings:
    """Node types a restore does not bring back (failures) and those n8n would not load on
    the source either, or runs although their type version is unknown (notes)."""

    failures: list[str]
    notes: list[str]


def _label(node_type: NodeType, what: str, workflows: list[str]) -> str:
    shown = ", ".join(workflows[:MAX_NAMED_WORKFLOWS])
    more = len(workflows) - MAX_NAMED_WORKFLOWS
    return f"{node_type} ({what}) used by {shown}" + (f" and {more} more" if more > 0 else "")


@dataclass
class NodeTypeUse:
    """The node types used by a set of workflows, with the workflows that use each."""

    by_type: dict[NodeType, list[str]] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        """The distinct type names, all versions together."""
        return {node_type.name for node_type in self.by_type}

    def add(self, workflow: WorkflowRow) -> None:
        """Count the node types and versions one workflow's nodes use."""
        label = f"{workflow.id} ({workflow.name!r})"
        nodes = workflow.nodes if isinstance(workflow.nodes, list) else []
        for node in nodes:
            if not isinstance(node, dict) or not isinstance(node.get("type"), str):
                continue
            version = _version(node.get("typeVersion"))
            if version is None:
                continue
            users = self.by_type.setdefault(NodeType(node["type"], version), [])
            if label not in users:
                users.append(label)

    def findings(self, loaded: LoadedTypes, *, same_major: bool) -> NodeTypeFindings:
        """Judge every used type (and version) ``loaded`` lacks.

        Community and custom nodes come back with the snapshot, so a missing one always
        fails. n8n's built-in nodes come with n8n itself, and n8n removes or excludes them
        only in a major release: on the source's own major one that is missing was missing on
        the source too (a note); on another major (an upgrade rehearsal) it is what the
        upgrade breaks (a failure). A node listed by one
        description runs whatever type version a workflow gives it (n8n uses its only
        implementation): an unknown version of it is a note.
        """
        failures: list[str] = []
        notes: list[str] = []
        for node_type, workflows in sorted(self.by_type.items()):
            versions = loaded.versions.get(node_type.name)
            if versions is not None and node_type.version in versions:
                continue
            built_in = node_type.name.startswith(BUILT_IN_PACKAGES)
            if versions is None:
                what = "not installed" if not built_in else "not in this n8n"
            else:
                what = "this type version is not loaded"
            if versions is not None and loaded.descriptions.get(node_type.name) == 1:
                notes.append(_label(node_type, f"{what}; n8n runs its only version", workflows))
            elif built_in and same_major:
                notes.append(_label(node_type, f"{what}, nor in the source's", workflows))
            else:
                failures.append(_label(node_type, what, workflows))
        return NodeTypeFindings(failures, notes)


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
        use.add(workflow)
    return use


def loaded_node_types(listing: Any) -> LoadedTypes:
    """What n8n's ``/types/nodes.json`` answer lists.

    Raises N8nCheckError when the answer is not a list of node descriptions.
    """
    if not isinstance(listing, list):
        raise N8nCheckError(f"{TYPES_PATH} did not answer a list of node types")
    loaded = LoadedTypes({}, {})
    for item in listing:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise N8nCheckError(f"{TYPES_PATH} lists an entry that is not a node type")
        name = item["name"]
        raw = item.get("version")
        versions = raw if isinstance(raw, list) else [raw]
        known = loaded.versions.setdefault(name, set())
        known.update(v for v in map(_version, versions) if v is not None)
        loaded.descriptions[name] = loaded.descriptions.get(name, 0) + 1
    return loaded
