"""The other entities, back after a restore: compared in the restored database with the
manifest's digests, and asked of the restored n8n itself where its editor's API lists them."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from backup.digests import entity_row_hash
from backup.errors import N8nCheckError
from backup.manifest import Manifest
from backup.n8n.entities import entity_rows
from backup.n8n.session import EditorSession
from backup.n8n.tables import N8nTables
from backup.secret import Secret

PAGE = 50
# Kind -> (the editor's endpoint that lists it, the table whose ids it must serve).
SERVED = {
    "tags": ("/rest/tags", "tag_entity"),
    "users": ("/rest/users", "user"),
    "projects": ("/rest/projects", "project"),
    "variables": ("/rest/variables", "variables"),
    "data tables": ("/rest/data-tables-global", "data_table"),
}
PAGED = frozenset({"/rest/users", "/rest/data-tables-global"})


@dataclass(frozen=True)
class StoredEntities:
    """Per kind of the manifest: how many the restored database holds, how many of those an
    upgrade added, and one problem per kind that lost or (without an upgrade) gained rows."""

    found: dict[str, int]
    added_by_upgrade: dict[str, int]
    problems: list[str]


def stored_entity_problems(
    manifest: Manifest, tables: N8nTables, encryption_key: Secret, *, upgraded: bool
) -> StoredEntities:
    """Compare the restored database's rows with the manifest's, row by row (by keyed hash).

    Every row of the snapshot must be there, unchanged. Rows the snapshot lacks are a problem
    on its own version; after an upgrade (``upgraded``) they are what the target's
    migrations added (2.x adds workflow versions, for one), and are counted apart.
    """
    # Rows are hashed as they are read, in no order: only the multiset of hashes is compared.
    restored = {
        name: Counter(entity_row_hash(row, encryption_key.reveal()) for row in rows)
        for name, rows in entity_rows(tables)
    }
    result = StoredEntities({}, {}, [])
    for name, expected in sorted(manifest.entities.items()):
        have = restored.get(name)
        if have is None:
            result.problems.append(f"{name}: missing (the restored database has no such table)")
            continue
        result.found[name] = count = have.total()
        want = Counter(expected.rows)
        lost_rows = want - have
        lost = sum(lost_rows.values())
        extra = sum((have - want).values())
        if lost:
            named = sorted(expected.labels[row] for row in lost_rows if row in expected.labels)
            result.problems.append(
                f"{name}: {lost} of the snapshot's {expected.count} missing or changed "
                f"({count} restored)" + (f": {', '.join(named[:10])}" if named else "")
            )
        if extra and upgraded:
            result.added_by_upgrade[name] = extra
        elif extra:
            result.problems.append(
                f"{name}: {extra} restored that the snapshot does not hold ({count} restored)"
            )
    return result


def _items(body: Any, endpoint: str) -> list[dict[str, Any]]:
    """The listed objects, whatever envelope this n8n version uses."""
    if isinstance(body, dict):
        body = body.get("items", body.get("data"))
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise N8nCheckError(f"{endpoint} did not answer a list")
    return body


def _served_ids(session: EditorSession, endpoint: str) -> set[str]:
    if endpoint not in PAGED:
        return {str(item.get("id")) for item in _items(session.json("GET", endpoint), endpoint)}
    ids: set[str] = set()
    skip = 0
    while True:
        page = _items(session.json("GET", endpoint, params={"skip": skip, "take": PAGE}), endpoint)
        before = len(ids)
        ids.update(str(item.get("id")) for item in page)
        if len(page) < PAGE or len(ids) == before:  # the end, or an answer ignoring skip
            return ids
        skip += PAGE


def served_entity_problems(
    manifest: Manifest, tables: N8nTables, session: EditorSession
) -> list[str]:
    """Kinds of the manifest the restored n8n's API does not list exactly as its database
    holds them (the database itself is compared by ``stored_entity_problems``)."""
    problems = []
    for name, (endpoint, table) in SERVED.items():
        if name not in manifest.entities:
            continue
        stored = {str(row[0]) for row in tables.select(table, ["id"])}
        served = _served_ids(session, endpoint)
        missing = sorted(stored - served)
        if missing:
            shown = json.dumps(missing[:5])
            problems.append(f"{name}: n8n does not serve {len(missing)} of {len(stored)}: {shown}")
    return problems
