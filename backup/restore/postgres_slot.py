"""The PostgreSQL database slot: the dump is restored beside the live database under a staging
name, then the two are renamed in one transaction; the old one stays as a rollback database."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from psycopg import sql

from backup.errors import InputError
from backup.n8n.folder import N8nFolder
from backup.n8n.postgres import (
    PostgresTables,
    PostgresTarget,
    drop_database,
    restore_dump,
    with_database,
)
from backup.n8n.tables import N8nTables
from backup.restore.database_slot import KEEP_ROLLBACKS, STAMP, DatabaseSlot, rollback_stamp
from backup.restore.fault_points import SWAPPING, pause_point
from backup.restore.journal import TOUCHED, RestoreJournal

# PostgreSQL cuts longer names short, which would make the staging and rollback names collide.
POSTGRES_NAME_LIMIT = 63


class PostgresSlot(DatabaseSlot):
    """A PostgreSQL database: the dump is restored beside it under a staging name, then the two
    are renamed; the old one stays on the server as ``<name>_rollback_<time>``."""

    kind = "postgres"

    def __init__(self, target: PostgresTarget, dump: Path | None, folder: N8nFolder) -> None:
        super().__init__(folder)
        if len(target.dbname) + len("_restoring_") + len(rollback_stamp()) > POSTGRES_NAME_LIMIT:
            raise InputError(
                f"database name {target.dbname!r} is too long to keep a rollback beside it "
                f"(PostgreSQL names have at most {POSTGRES_NAME_LIMIT} characters); nothing "
                "was changed"
            )
        self.target = target
        self.dump = dump
        stamp = rollback_stamp().lower()
        self.staging_name = f"{target.dbname}_restoring_{stamp}"
        self.rollback_name = f"{target.dbname}_rollback_{stamp}"

    @classmethod
    def from_journal(
        cls, target: PostgresTarget, folder: N8nFolder, journal: RestoreJournal
    ) -> PostgresSlot:
        """The slot of a killed restore, to undo it: swapped only if the rename committed.
        Refuses names that are not this database's staging and rollback names."""
        if journal.database != target.dbname:
            raise InputError(
                f"the interrupted restore was into database {journal.database!r}, --postgres "
                f"names {target.dbname!r}: give the DSN of {journal.database!r}; nothing was "
                "changed"
            )
        slot = cls(target, None, folder)
        for role, name in (("restoring", journal.staging), ("rollback", journal.rollback)):
            if not re.fullmatch(_name_pattern(target, role), name):
                raise InputError(
                    f"the restore journal in {slot.rollback_dir} names database {name!r}, which "
                    f"is not a {role} database of {target.dbname!r}: check it by hand; nothing "
                    "was changed"
                )
        if journal.staging.rsplit("_", 1)[1] != journal.rollback.rsplit("_", 1)[1]:
            raise InputError(
                f"the restore journal in {slot.rollback_dir} names databases of two different "
                "restores: check it by hand; nothing was changed"
            )
        slot.staging_name, slot.rollback_name = journal.staging, journal.rollback
        slot.swapped = journal.step in TOUCHED and slot.rollback_name in database_names(target)
        return slot

    def tables(self) -> N8nTables:
        return PostgresTables(self.target)

    def clear_leftovers(self) -> list[str]:
        # The advisory lock on this database is ours: no other restore stages into it now.
        leftovers = sorted(_databases_named(self.target, "restoring"))
        for name in leftovers:
            drop_database(self.target, name)
        return [f"staging database {name}" for name in leftovers]

    def rollback(self) -> str:
        return self.rollback_name

    def journal_entry(self, container: str, snapshot_id: str, step: str) -> RestoreJournal:
        entry = super().journal_entry(container, snapshot_id, step)
        return replace(entry, database=self.target.dbname, staging=self.staging_name)

    def prepare(self) -> str:
        assert self.dump is not None, "a resumed slot has nothing to prepare"
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
        # Asked of the server too: an interrupt can land after the rename committed and
        # before ``swapped`` was set.
        if self.swapped or self.rollback_name in database_names(self.target):
            self._rename(
                (self.target.dbname, self.staging_name), (self.rollback_name, self.target.dbname)
            )
            self.swapped = False

    def discard(self) -> None:
        drop_database(self.target, self.staging_name)

    def keep_bounded(self) -> None:
        for name in rollback_databases(self.target)[KEEP_ROLLBACKS:]:
            if name != self.rollback_name:
                drop_database(self.target, name)

    def _rename(self, *pairs: tuple[str, str]) -> None:
        """Both renames in one transaction: the live name never points at nothing."""
        maintenance = with_database(self.target, "postgres")
        with maintenance.connect() as admin, admin.transaction():
            for number, (old, new) in enumerate(pairs):
                if number:
                    pause_point(SWAPPING)
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(old), sql.Identifier(new)
                    )
                )


def database_names(target: PostgresTarget) -> set[str]:
    """The databases on ``target``'s server."""
    with with_database(target, "postgres").connect(autocommit=True) as admin:
        return {str(row[0]) for row in admin.execute("SELECT datname FROM pg_database")}


def _name_pattern(target: PostgresTarget, role: str) -> str:
    """How restores name the databases they keep beside ``target``'s: ``<name>_<role>_<time>``
    (role ``restoring``: a staging database; ``rollback``: a previous database)."""
    return f"{re.escape(target.dbname)}_{role}_{STAMP.lower()}"


def _databases_named(target: PostgresTarget, role: str) -> list[str]:
    """The databases on ``target``'s server named as restores name their ``role`` ones."""
    pattern = _name_pattern(target, role)
    return [name for name in database_names(target) if re.fullmatch(pattern, name)]


def rollback_databases(target: PostgresTarget) -> list[str]:
    """The rollback databases restores kept beside ``target``'s database, newest first."""
    names = _databases_named(target, "rollback")
    return sorted(names, key=lambda name: name.rsplit("_", 1)[1], reverse=True)
