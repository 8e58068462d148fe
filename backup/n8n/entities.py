"""The entities besides workflows and credentials an operator expects back after a restore:
tags, folders, projects and their sharing, variables, data tables and their rows, workflow
history, users and their roles, execution history.

Each kind is read from n8n's tables through columns that an upgrade from 1.x to 2.x leaves
unchanged (others, such as timestamps n8n bumps or columns 2.x added, are left out), as
sorted canonical rows: the same data gives the same rows on the source copy and on the
restored, booted instance. Kinds whose table this n8n version lacks are absent.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from backup.n8n.tables import N8nTables

DATA_TABLE_ROWS = "data table rows"
_TABLE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ROW_TIMESTAMPS = frozenset({"createdAt", "updatedAt"})


@dataclass(frozen=True)
class EntityKind:
    """One kind of entity: its name in reports, its table, and the columns compared."""

    name: str
    table: str
    columns: tuple[str, ...]
    json_columns: frozenset[str] = frozenset()
    # Columns that name a row in a report (never secret values); none: rows are not named.
    label: tuple[str, ...] = ()


ROLE_COLUMN = "{role}"  # the user's role: "role" on older 1.x, "roleSlug" since
KINDS = (
    EntityKind("tags", "tag_entity", ("id", "name"), label=("id", "name")),
    EntityKind("workflow tags", "workflows_tags", ("workflowId", "tagId")),
    EntityKind(
        "folders", "folder", ("id", "name", "parentFolderId", "projectId"), label=("id", "name")
    ),
    EntityKind("folder tags", "folder_tag", ("folderId", "tagId")),
    EntityKind("projects", "project", ("id", "name", "type"), label=("id", "name")),
    EntityKind("project members", "project_relation", ("projectId", "userId", "role")),
    EntityKind("workflow sharing", "shared_workflow", ("workflowId", "projectId", "role")),
    EntityKind("credential sharing", "shared_credentials", ("credentialsId", "projectId", "role")),
    EntityKind("variables", "variables", ("id", "key", "type", "value"), label=("id", "key")),
    EntityKind("data tables", "data_table", ("id", "name", "projectId"), label=("id", "name")),
    EntityKind(
        "data table columns", "data_table_column", ("id", "name", "type", "index", "dataTableId")
    ),
    EntityKind(
        "workflow versions",
        "workflow_history",
        ("versionId", "workflowId", "nodes", "connections"),
        frozenset({"nodes", "connections"}),
    ),
    EntityKind("users", "user", ("id", "email", ROLE_COLUMN), label=("id",)),
    EntityKind("executions", "execution_entity", ("id", "workflowId", "mode", "startedAt")),
)
NAMES = frozenset({*(kind.name for kind in KINDS), DATA_TABLE_ROWS})


def _plain(value: Any, is_json: bool) -> Any:
    """A value as canonical JSON can hold it, equal for equal data within one database kind."""
    if is_json and isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.UTC).isoformat()  # whatever the session's TimeZone
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return str(value)  # PostgreSQL's uuid and other types psycopg hands back as objects


def _plain_row(row: tuple[Any, ...], json_flags: list[bool]) -> list[Any]:
    return [_plain(value, flag) for value, flag in zip(row, json_flags, strict=True)]


def _columns(tables: N8nTables, kind: EntityKind) -> list[str] | None:
    present = tables.columns(kind.table)
    role = "roleSlug" if "roleSlug" in present else "role"
    wanted = [role if column == ROLE_COLUMN else column for column in kind.columns]
    return wanted if set(wanted) <= present else None


def _data_table_rows(tables: N8nTables) -> Iterator[list[Any]]:
    """Every data table's rows, each tagged with its table id; ids that could not name a
    table of n8n's (a hostile copy) are skipped, their table counted by ``data tables``."""
    for (table_id,) in tables.select("data_table", ["id"]):
        if not isinstance(table_id, str) or not _TABLE_ID.fullmatch(table_id):
            continue
        name = f"data_table_user_{table_id}"
        if not tables.has_table(name):
            continue
        columns = sorted(tables.columns(name) - _ROW_TIMESTAMPS)
        no_json = [False] * len(columns)
        for row in tables.iter_select(name, columns):
            plain = _plain_row(row, no_json)
            yield [table_id, dict(zip(columns, plain, strict=True))]


def row_label(kind_name: str, row: list[Any]) -> str | None:
    """How a report names one row of a kind ('id (name)'), or None for unnamed kinds."""
    kind = next((kind for kind in KINDS if kind.name == kind_name), None)
    if kind is None or not kind.label:
        return None
    values = [str(row[kind.columns.index(column)]) for column in kind.label]
    return values[0] + (f" ({values[1]!r})" if len(values) > 1 else "")


def entity_rows(tables: N8nTables) -> Iterator[tuple[str, Iterator[list[Any]]]]:
    """Each kind this database has, with its canonical rows read one at a time (unsorted):
    a kind's rows must be read to the end before the next kind is asked for."""
    for kind in KINDS:
        if not tables.has_table(kind.table):
            continue
        columns = _columns(tables, kind)
        if columns is None:
            continue
        flags = [column in kind.json_columns for column in columns]
        yield kind.name, (_plain_row(row, flags) for row in tables.iter_select(kind.table, columns))
        if kind.name == "data tables":
            yield DATA_TABLE_ROWS, _data_table_rows(tables)
