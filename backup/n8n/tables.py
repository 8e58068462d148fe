"""Reading n8n's own tables, the same way whatever database holds them.

Subclasses say how to name a table and how to run a read-only query; SQLite returns JSON
columns as text and PostgreSQL as parsed values, which ``_json`` evens out.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from backup.errors import SourceError
from backup.identifiers import quote_identifier
from backup.n8n.cipher import DataKey


@dataclass(frozen=True)
class WorkflowRow:
    """A workflow as stored: nodes and connections parsed from their JSON columns."""

    id: str
    name: str
    active: bool
    nodes: Any
    connections: Any


@dataclass(frozen=True)
class OwnerRow:
    """The instance owner's sign-in fields, as n8n hashes them into its auth token."""

    id: str
    email: str
    password_hash: str = field(repr=False)
    mfa_secret: str | None = field(repr=False)  # only when MFA is enabled


@dataclass(frozen=True)
class CommunityPackage:
    """A community node package n8n installed, with the node types it brought."""

    name: str
    version: str
    node_types: tuple[str, ...]


@dataclass(frozen=True)
class CredentialRow:
    """A credential as stored; ``data`` is still encrypted."""

    id: str
    name: str
    type: str
    data: str


# deployment_key types read by this tool (inlined as SQL literals, so only these).
_KEY_TYPES = frozenset({"signing.jwt"})


def _json(value: Any, empty: Any) -> Any:
    if value is None:
        return empty
    if isinstance(value, (str, bytes)):
        return json.loads(value) if value else empty
    return value


class N8nTables(ABC):
    """Read-only access to n8n's tables (workflows, credentials, executions, keys, migrations)."""

    @abstractmethod
    def table_sql(self, name: str) -> str:
        """The quoted, fully qualified name of one of n8n's tables, for use in SQL."""

    @abstractmethod
    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query (values as ``params``, never in ``sql``) and return its rows."""

    def _rows(self, sql: str) -> Iterator[tuple[Any, ...]]:
        """The rows of a read-only query without values, one at a time; subclasses stream them
        from the server, so that a table's size does not decide our memory."""
        yield from self._query(sql)

    def one_view(self) -> AbstractContextManager[None]:
        """Within it, this thread's reads may use the database as it was at the first of them
        (a remote copy is then made once, not for every read). Local and PostgreSQL tables are
        read live: nothing changes for them."""
        return contextlib.nullcontext()

    @abstractmethod
    def _execute_in_one_transaction(self, statements: list[str]) -> None:
        """Run statements that change the database, all or none (only ever on a copy)."""

    @abstractmethod
    def table_kind(self, name: str) -> str | None:
        """What one of n8n's tables is: "table", "view" or another kind; None when absent."""

    @abstractmethod
    def columns(self, name: str) -> set[str]:
        """The column names of one of n8n's tables."""

    def has_table(self, name: str) -> bool:
        """Whether one of n8n's tables exists (some are newer than others)."""
        return self.table_kind(name) is not None

    def deactivation_statements(self) -> list[str]:
        """What makes a restored copy inert, in SQL both dialects run: every workflow inactive
        (and unpublished on 2.x), waiting executions canceled, registered webhooks removed.

        n8n activates every active workflow when it starts and has no switch to skip that; a
        webhook row left behind would still route production calls to its workflow.
        """
        assignments = ["active = false"]
        if "activeVersionId" in self.columns("workflow_entity"):  # n8n 2.x publishes with it
            assignments.append('"activeVersionId" = NULL')
        statements = [
            f"UPDATE {self.table_sql('workflow_entity')} SET {', '.join(assignments)}",
            f"UPDATE {self.table_sql('execution_entity')} SET status = 'canceled', "
            '"waitTill" = NULL '
            "WHERE status IN ('waiting', 'new', 'running') OR \"waitTill\" IS NOT NULL",
        ]
        if self.has_table("webhook_entity"):
            statements.append(f"DELETE FROM {self.table_sql('webhook_entity')}")
        return statements

    def deactivate(self) -> int:
        """Make a restored copy inert: no workflow activates and no waiting execution resumes.

        n8n activates every active workflow when it starts and has no switch to skip that, so
        the restored copy (never the source) is edited before the boot. Refuses a copy whose
        core tables are views (decoys). Returns how many workflows were active.
        """
        decoys = self.decoy_tables()
        if decoys:
            raise SourceError(f"the restored copy is not n8n's: {decoys[0]}; not booted")
        active = len(self.active_workflow_ids())
        self._execute_in_one_transaction(self.deactivation_statements())
        if self.active_workflow_ids():
            raise SourceError("workflows of the restored copy stay active after deactivation")
        return active

    def decoy_tables(self) -> list[str]:
        """n8n's core tables that exist as something other than a plain table (a hostile
        snapshot can hide the real rows behind views); each such name, with its kind."""
        return [
            f"{name} is a {kind}"
            for name in ("workflow_entity", "execution_entity", "credentials_entity")
            if (kind := self.table_kind(name)) not in (None, "table")
        ]

    def server_version(self) -> str | None:
        """The database server's version (PostgreSQL: "15.10"); None for a SQLite file."""
        return None

    def data_keys(self) -> dict[str, DataKey]:
        """The data keys of n8n 2.x's key rotation (``deployment_key``), still wrapped; none on
        n8n 1.x, which has no such table."""
        if not self.has_table("deployment_key"):
            return {}
        rows = self._query(
            f"SELECT id, value, algorithm FROM {self.table_sql('deployment_key')} "
            "WHERE type = 'data_encryption'"
        )
        return {str(row[0]): DataKey(str(row[1]), str(row[2])) for row in rows}

    def deployment_keys(self, key_type: str) -> list[DataKey]:
        """The active ``deployment_key`` rows of one type (n8n 2.x), still wrapped."""
        if not self.has_table("deployment_key") or key_type not in _KEY_TYPES:
            return []
        rows = self._query(
            f"SELECT value, algorithm FROM {self.table_sql('deployment_key')} "
            f"WHERE type = '{key_type}' AND status = 'active'"
        )
        return [DataKey(str(row[0]), str(row[1])) for row in rows]

    def iter_workflows(self) -> Iterator[WorkflowRow]:
        """Every workflow, archived ones included, read one at a time."""
        for row in self._rows(
            f"SELECT id, name, active, nodes, connections FROM {self.table_sql('workflow_entity')}"
        ):
            yield WorkflowRow(
                id=str(row[0]),
                name=str(row[1]),
                active=bool(row[2]),
                nodes=_json(row[3], []),
                connections=_json(row[4], {}),
            )

    def workflows(self) -> list[WorkflowRow]:
        """Every workflow, archived ones included."""
        return list(self.iter_workflows())

    def credentials(self) -> list[CredentialRow]:
        """Every credential, with its still-encrypted data."""
        rows = self._query(
            f"SELECT id, name, type, data FROM {self.table_sql('credentials_entity')}"
        )
        return [CredentialRow(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    def iter_select(self, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
        """Chosen columns of every row of one of n8n's tables (names quoted here), one row at
        a time: no other query may run on this reader until the iteration ends."""
        listed = ", ".join(quote_identifier(column) for column in columns)
        return self._rows(f"SELECT {listed} FROM {self.table_sql(table)}")

    def select(self, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
        """Chosen columns of every row of one of n8n's tables (names quoted here)."""
        return list(self.iter_select(table, columns))

    def execution_data_mentioning(self, word: str) -> Iterator[str]:
        """The stored data of the executions whose data contains ``word`` (letters only), one
        execution at a time."""
        if not word.isalpha() or not self.has_table("execution_data"):
            return
        for row in self._rows(
            f"SELECT data FROM {self.table_sql('execution_data')} WHERE data LIKE '%{word}%'"
        ):
            yield row[0] if isinstance(row[0], str) else str(row[0])

    def count(self, table: str) -> int:
        """Number of rows in one of n8n's tables."""
        return int(self._query(f"SELECT COUNT(*) FROM {self.table_sql(table)}")[0][0])

    def active_workflow_ids(self) -> list[str]:
        """Ids of the workflows n8n treats as active."""
        rows = self._query(f"SELECT id FROM {self.table_sql('workflow_entity')} WHERE active")
        return [str(row[0]) for row in rows]

    def running_executions(self) -> int:
        """Executions the instance is running right now (status new or running)."""
        rows = self._query(
            f"SELECT COUNT(*) FROM {self.table_sql('execution_entity')} "
            "WHERE status IN ('new', 'running')"
        )
        return int(rows[0][0])

    def api_keys(self) -> list[str]:
        """Public API keys stored in the database, newest first (n8n keeps them in clear)."""
        rows = self._query(
            f'SELECT "apiKey" FROM {self.table_sql("user_api_keys")} ORDER BY "createdAt" DESC'
        )
        return [str(row[0]) for row in rows if row[0]]

    def community_packages(self) -> list[CommunityPackage]:
        """The community packages n8n recorded as installed (``installed_packages``)."""
        if not self.has_table("installed_packages"):
            return []
        packages = self._query(
            f'SELECT "packageName", "installedVersion" FROM {self.table_sql("installed_packages")}'
        )
        nodes = self._query(f"SELECT type, package FROM {self.table_sql('installed_nodes')}")
        return [
            CommunityPackage(
                str(name),
                str(version),
                tuple(sorted(str(kind) for kind, package in nodes if package == name)),
            )
            for name, version in sorted(packages)
        ]

    def owner(self) -> OwnerRow | None:
        """The instance owner (n8n 1.x: ``role`` column; 2.x: ``roleSlug``); None when the
        owner was never set up."""
        role_column = "roleSlug" if "roleSlug" in self.columns("user") else "role"
        rows = self._query(
            f'SELECT id, email, password, "mfaEnabled", "mfaSecret" FROM {self.table_sql("user")} '
            f"WHERE \"{role_column}\" = 'global:owner' AND email IS NOT NULL "
            "AND password IS NOT NULL"
        )
        if not rows:
            return None
        user_id, email, password, mfa_enabled, mfa_secret = rows[0]
        return OwnerRow(
            str(user_id),
            str(email),
            str(password),
            str(mfa_secret) if mfa_enabled and mfa_secret else None,
        )

    def migrations(self) -> list[str]:
        """Names of the migrations that have run on this database, in order."""
        rows = self._query(f"SELECT name FROM {self.table_sql('migrations')} ORDER BY id")
        return [str(row[0]) for row in rows]
