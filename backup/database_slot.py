"""The database an n8n instance runs on, as the restore swaps it: SQLite file or PostgreSQL.

A slot is prepared while n8n still runs (rollback copy, staged restore), swapped while n8n is
stopped, and swapped back if anything after the swap fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from backup.atomic import PRIVATE_FILE_MODE, fsync_dir, fsync_file, make_private_dir
from backup.errors import InputError
from backup.n8n_folder import N8nFolder
from backup.sources.postgres import (
    PostgresTables,
    PostgresTarget,
    drop_database,
    restore_dump,
    with_database,
)
from backup.sources.sqlite import N8nDatabase, online_copy
from backup.sources.tables import N8nTables

ROLLBACK_DIR = "restore-rollback"
# Rollback copies kept in n8n's folder (the newest ones); older ones are removed.
KEEP_ROLLBACKS = 3
SPACE_MARGIN_BYTES = 16 << 20
SIDE_FILES = ("-wal", "-shm", "-journal")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


class DatabaseSlot(ABC):
    """Where the live database is, and how to put a snapshot's in its place.

    ``swapped`` says whether the live database was replaced: only then does ``swap_back``
    change anything (a rollback must never overwrite data that was not touched).
    """

    swapped = False

    @abstractmethod
    def tables(self) -> N8nTables:
        """The live database's tables (read-only use)."""

    @property
    def journal_dir(self) -> Path | None:
        """Where the restore journal of this slot lives (None: no resume for this kind)."""
        return None

    def check_space(self) -> None:
        """Before anything is written: refuse when the copies the restore makes cannot fit.
        A database on a server (PostgreSQL) has nothing to check here."""
        return None

    @abstractmethod
    def prepare(self) -> str:
        """While n8n runs: make the rollback copy or stage the new database; say where it is.
        Leaves nothing behind when it fails or is interrupted."""

    @abstractmethod
    def swap(self, on_replace: Callable[[], None] = lambda: None) -> None:
        """While n8n is stopped: put the snapshot's database in place, keeping the old one;
        ``on_replace`` runs right before the live database is first changed."""

    @abstractmethod
    def swap_back(self) -> None:
        """While n8n is stopped: put the old database back."""


class SqliteSlot(DatabaseSlot):
    """``database.sqlite`` in an n8n folder; the old file is kept under restore-rollback/."""

    def __init__(self, folder: N8nFolder, replacement: Path, table_prefix: str = "") -> None:
        self.folder = folder
        self.replacement = replacement
        self.table_prefix = table_prefix
        self.rollback_copy = folder.path / ROLLBACK_DIR / _stamp() / folder.database.name

    def tables(self) -> N8nTables:
        return N8nDatabase(self.folder.database, self.table_prefix)

    def check_space(self) -> None:
        # The rollback copy of the live database and the staged copy of the snapshot's live
        # side by side in n8n's folder for a moment, plus a margin for n8n's own writes.
        # Peak: the first rollback copy beside the fresh one taken after the stop, or the
        # rollback copy beside the staged new database.
        live, new = self.folder.database.stat().st_size, self.replacement.stat().st_size
        needed = max(2 * live, live + new)
        needed += needed // 10 + SPACE_MARGIN_BYTES
        free = shutil.disk_usage(self.folder.path).free
        if free < needed:
            raise InputError(
                f"not enough free space for the restore in {self.folder.path}: it needs "
                f"{needed / 1e6:.1f} MB (rollback copy and new database), {free / 1e6:.1f} MB "
                "are free; free some space and restore again; nothing was changed"
            )

    def prepare(self) -> str:
        make_private_dir(self.rollback_copy.parent)
        try:
            online_copy(self.folder.database, self.rollback_copy)
            self.rollback_copy.chmod(PRIVATE_FILE_MODE)
        except BaseException:
            shutil.rmtree(self.rollback_copy.parent, ignore_errors=True)
            raise
        prune_rollbacks(self.folder.path / ROLLBACK_DIR, KEEP_ROLLBACKS, self.rollback_copy.parent)
        return str(self.rollback_copy)

    @property
    def journal_dir(self) -> Path | None:
        return self.folder.path / ROLLBACK_DIR

    def swap(self, on_replace: Callable[[], None] = lambda: None) -> None:
        # n8n is stopped now: copy the previous database again, so that the rollback holds
        # every write n8n made after the first copy (the first stays if this one fails).
        fresh = self.rollback_copy.with_name(f".{self.rollback_copy.name}.fresh")
        try:
            online_copy(self.folder.database, fresh)
            fresh.chmod(PRIVATE_FILE_MODE)
            fsync_file(fresh)
            fresh.replace(self.rollback_copy)
        finally:
            fresh.unlink(missing_ok=True)
        on_replace()
        self.swapped = True  # from here on the live file may be the new one
        self._put(self.replacement)

    def swap_back(self) -> None:
        if self.swapped:
            self._put(self.rollback_copy)

    def _put(self, source: Path) -> None:
        replace_database(self.folder, source)


def prune_rollbacks(rollback_dir: Path, keep: int, current: Path) -> list[Path]:
    """Remove all but the ``keep`` newest rollback folders (``current`` always stays); never
    through a link. Returns what was removed."""
    folders = sorted(
        (p for p in rollback_dir.iterdir() if p.is_dir() and not p.is_symlink()),
        key=lambda p: p.name,
        reverse=True,
    )
    removed = [p for p in folders[keep:] if p != current]
    for folder in removed:
        shutil.rmtree(folder)
    return removed


def replace_database(folder: N8nFolder, source: Path) -> None:
    """Copy ``source`` over n8n's database, keeping owner and mode; drop its side files."""
    live = folder.database
    info = live.stat()
    staged = live.with_name(f".{live.name}.restoring")
    try:
        shutil.copyfile(source, staged)
        os.chown(staged, info.st_uid, info.st_gid)
        os.chmod(staged, info.st_mode & 0o777)
        fsync_file(staged)
    except BaseException:
        staged.unlink(missing_ok=True)  # a partial copy must never look like a database
        raise
    for suffix in SIDE_FILES:  # a stale WAL would be replayed into the new database
        live.with_name(live.name + suffix).unlink(missing_ok=True)
    staged.replace(live)
    fsync_dir(live.parent)


class PostgresSlot(DatabaseSlot):
    """A PostgreSQL database: the dump is restored beside it under a staging name, then the two
    are renamed; the old one stays on the server as ``<name>_rollback_<time>``."""

    def __init__(self, target: PostgresTarget, dump: Path) -> None:
        self.target = target
        self.dump = dump
        stamp = _stamp().lower()
        self.staging_name = f"{target.dbname}_restoring_{stamp}"
        self.rollback_name = f"{target.dbname}_rollback_{stamp}"

    def tables(self) -> N8nTables:
        return PostgresTables(self.target)

    def prepare(self) -> str:
        try:
            restore_dump(self.target, self.dump, self.staging_name)
        except BaseException:
            with contextlib.suppress(Exception):  # leave nothing behind on the server
                drop_database(self.target, self.staging_name)
            raise
        return f"database {self.rollback_name} on {self.target.host}:{self.target.port}"

    def swap(self, on_replace: Callable[[], None] = lambda: None) -> None:
        on_replace()
        self._rename(
            (self.target.dbname, self.rollback_name), (self.staging_name, self.target.dbname)
        )
        self.swapped = True

    def swap_back(self) -> None:
        if self.swapped:
            self._rename(
                (self.target.dbname, self.staging_name), (self.rollback_name, self.target.dbname)
            )

    def _rename(self, *pairs: tuple[str, str]) -> None:
        """Both renames in one transaction: the live name never points at nothing."""
        maintenance = with_database(self.target, "postgres")
        with maintenance.connect() as admin, admin.transaction():
            for old, new in pairs:
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(old), sql.Identifier(new)
                    )
                )
