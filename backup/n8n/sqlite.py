"""n8n's SQLite database: an online copy that never disturbs the running n8n, and reads of it."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from backup.atomic import copy_hashed, new_private_file
from backup.errors import InputError, SqliteBackupError
from backup.identifiers import quote_identifier, table_prefix_problem
from backup.n8n.tables import N8nTables

DATABASE_NAME = "database.sqlite"
# How long to wait for n8n's write lock before giving up on a step of the copy.
BUSY_TIMEOUT_SECONDS = 30.0
ROWS_PER_FETCH = 200


@contextmanager
def map_sqlite_errors(what: str) -> Iterator[None]:
    """Turn sqlite3 errors into SqliteBackupError naming what was being done."""
    try:
        yield
    except sqlite3.Error as exc:
        raise SqliteBackupError(f"{what} failed: {exc}") from None


def open_read_only(path: Path) -> sqlite3.Connection:
    """Open a database without any chance of writing to it."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def online_copy(source: Path, destination: Path) -> None:
    """Copy a live database with SQLite's backup API while n8n keeps writing to it.

    The whole copy is done in one step: n8n runs SQLite in WAL mode, so our read transaction does
    not block its writers, and a one-step copy cannot be restarted forever by their writes.
    The copy is switched to rollback-journal mode so that it is one self-contained file. It is
    not flushed to disk: the caller does that (fsync_file) before it relies on the copy, and a
    snapshot does it beside its checks.
    """
    with (
        map_sqlite_errors(f"online backup of {source}"),
        closing(open_read_only(source)) as src,
        closing(sqlite3.connect(destination)) as dst,
    ):
        src.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        # SQLite would otherwise fsync the copy inside the step (0.5 s of 1.5 s at 1 GB here).
        dst.execute("PRAGMA synchronous = OFF")
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode = DELETE")


def copy_database(source: Path, destination: Path) -> str | None:
    """Copy n8n's live SQLite database consistently to a new file; return the copy's sha256
    when the copy's own read computed it (None: hash the copy).

    n8n 1.x keeps its database in rollback-journal mode: the file alone is the database, so it
    is copied byte for byte inside a read transaction (its shared lock keeps n8n's writers
    waiting until the copy is complete, as the backup API's one-step copy would) and hashed in
    the same read. n8n 2.x uses WAL, where the file alone is not the database: the backup API
    copies it without blocking n8n's writers.
    """
    with (
        map_sqlite_errors(f"online backup of {source}"),
        closing(open_read_only(source)) as src,
    ):
        src.isolation_level = None  # our own BEGIN: the lock must last the whole copy
        src.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        src.execute("BEGIN")
        src.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # takes the shared lock
        mode = str(src.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode != "wal":
            with open(source, "rb", buffering=0) as handle:  # chunks straight from the file
                digest = copy_hashed(handle, destination)
                # Closing our handle drops this process's POSIX locks on the file: end first.
                src.execute("COMMIT")
            return digest
        src.execute("COMMIT")
    os.close(new_private_file(destination))
    online_copy(source, destination)  # into the empty private file: SQLite keeps its mode
    return None


def integrity_problems(path: Path) -> list[str]:
    """Run PRAGMA integrity_check; return its complaints (empty when the database is sound)."""
    try:
        with closing(open_read_only(path)) as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return [f"not a readable SQLite database: {exc}"]
    messages = [str(row[0]) for row in rows]
    return [] if messages == ["ok"] else messages


class N8nDatabase(N8nTables):
    """Read-only view of n8n's tables in a SQLite file (a copy, normally)."""

    def __init__(self, path: Path, table_prefix: str = "") -> None:
        if problem := table_prefix_problem(table_prefix):
            raise InputError(problem)
        self.path = path
        self.prefix = table_prefix

    def table_sql(self, name: str) -> str:
        return quote_identifier(f"{self.prefix}{name}")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with map_sqlite_errors(f"reading {self.path}"), closing(open_read_only(self.path)) as conn:
            return conn.execute(sql, params).fetchall()

    def _rows(self, sql: str) -> Iterator[tuple[Any, ...]]:
        with map_sqlite_errors(f"reading {self.path}"), closing(open_read_only(self.path)) as conn:
            cursor = conn.execute(sql)
            while batch := cursor.fetchmany(ROWS_PER_FETCH):
                yield from batch

    def _execute_in_one_transaction(self, statements: list[str]) -> None:
        with (
            map_sqlite_errors(f"preparing restored copy {self.path}"),
            closing(sqlite3.connect(self.path)) as conn,
        ):
            for statement in statements:
                conn.execute(statement)
            conn.commit()

    def use_wal(self) -> None:
        """Switch the file to WAL mode (a restored copy that n8n 2.x would switch at start)."""
        with (
            map_sqlite_errors(f"preparing restored copy {self.path}"),
            closing(sqlite3.connect(self.path)) as conn,
        ):
            conn.execute("PRAGMA journal_mode = WAL")

    def table_kind(self, name: str) -> str | None:
        rows = self._query("SELECT type FROM sqlite_master WHERE name = ?", (self.prefix + name,))
        return str(rows[0][0]) if rows else None

    def columns(self, name: str) -> set[str]:
        rows = self._query("SELECT name FROM pragma_table_info(?)", (self.prefix + name,))
        return {str(row[0]) for row in rows}
