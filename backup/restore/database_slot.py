"""The database an n8n instance runs on, as the restore swaps it (the SQLite file here; the
PostgreSQL database in postgres_slot.py).

A slot is prepared while n8n still runs (rollback copy, staged restore), swapped while n8n is
stopped, and swapped back if anything after the swap fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from backup.atomic import PRIVATE_FILE_MODE, fsync_dir, fsync_file
from backup.errors import InputError
from backup.n8n.folder import N8nFolder
from backup.n8n.sqlite import DATABASE_NAME, N8nDatabase, online_copy
from backup.n8n.tables import N8nTables
from backup.ownership import chown_tree
from backup.restore.fault_points import SWAPPING, pause_point
from backup.restore.journal import TOUCHED, RestoreJournal, clear_journal, write_journal

ROLLBACK_DIR = "restore-rollback"
# Rollback copies kept in n8n's folder (the newest ones); older ones are removed.
KEEP_ROLLBACKS = 3
SPACE_MARGIN_BYTES = 16 << 20
SIDE_FILES = ("-wal", "-shm", "-journal")


STAMP = r"\d{8}T\d{6}Z(-\d+)?"


def rollback_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


COPY_CHUNK = 1 << 20


def _owner(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid


def _open_private_dir(path: Path, owner: tuple[int, int], *, create: bool) -> None:
    """Make ``path`` a 0700 folder owned by ``owner``, through a descriptor opened without
    following links (a link put in its place is refused, not followed)."""
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        raise InputError(
            f"{path} is a link or not a folder: something with access to n8n's data put it "
            "there; check it, remove it, and restore again; nothing was changed"
        ) from None
    try:
        os.fchmod(fd, 0o700)
        os.fchown(fd, *owner)
    finally:
        os.close(fd)


class DatabaseSlot(ABC):
    """Where the live database is, and how to put a snapshot's in its place.

    ``swapped`` says whether the live database was replaced: only then does ``swap_back``
    change anything (a rollback must never overwrite data that was not touched). The restore's
    journal lives in n8n's folder for both kinds, owned like the rest of n8n's data.
    """

    kind: str

    def __init__(self, folder: N8nFolder) -> None:
        self.folder = folder
        self.swapped = False

    @property
    def rollback_dir(self) -> Path:
        """Where the journal (and, for SQLite, the rollback copies) live."""
        return self.folder.path / ROLLBACK_DIR

    @abstractmethod
    def tables(self) -> N8nTables:
        """The live database's tables (read-only use)."""

    @abstractmethod
    def rollback(self) -> str:
        """The previous database, as the journal and the operator name it."""

    def journal_entry(self, container: str, snapshot_id: str, step: str) -> RestoreJournal:
        """What ``record`` writes; the PostgreSQL slot adds its database names."""
        return RestoreJournal(container, snapshot_id, self.rollback(), step, self.kind)

    def record(
        self,
        container: str,
        snapshot_id: str,
        step: str,
        started_at: str = "",
        folders: tuple[str, str] = ("", ""),
    ) -> None:
        """Write the journal: ``step`` is about to be taken (``started_at``: when the restore
        started the container on the new data, as Docker says; ``folders``: the stamp and
        binary root of the folders swapped beside the database)."""
        self.claim_rollback_dir()
        entry = self.journal_entry(container, snapshot_id, step)
        stamp, binary_root = folders
        write_journal(
            self.rollback_dir,
            replace(entry, started_at=started_at, folders=stamp, binary_root=binary_root),
        )

    def claim_rollback_dir(self) -> None:
        """Make restore-rollback/ ours (0700, this process's user) while we work in it: the
        folder lies in n8n's data, which n8n's container (and anyone with the volume) can write,
        and files we write there as root must not be swapped for links meanwhile. A link or a
        non-folder in its place is refused."""
        _open_private_dir(self.rollback_dir, (os.getuid(), os.getgid()), create=True)

    def hand_over(self) -> None:
        """When we are done: restore-rollback/ and what we kept in it are owned like the rest
        of n8n's data again (never through a link)."""
        owner = _owner(self.folder.path)
        if not self.rollback_dir.exists():
            return
        _open_private_dir(self.rollback_dir, owner, create=False)
        for entry in self.rollback_dir.iterdir():
            chown_tree(entry, *owner)

    def forget(self) -> None:
        """The restore has finished or has been undone: no journal any more."""
        clear_journal(self.rollback_dir)

    def clear_leftovers(self) -> list[str]:
        """Before a restore prepares (its locks held, no restore pending): remove what a restore
        killed while it prepared left behind (it had written no journal yet); say what."""
        return []

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

    def discard(self) -> None:
        """After a rollback: remove what was staged and is no longer needed."""
        return None

    def keep_bounded(self) -> None:
        """After a restore: remove all but the newest rollback copies."""
        return None


class SqliteSlot(DatabaseSlot):
    """``database.sqlite`` in an n8n folder; the old file is kept under restore-rollback/."""

    kind = "sqlite"

    def __init__(self, folder: N8nFolder, replacement: Path, table_prefix: str = "") -> None:
        super().__init__(folder)
        self.replacement = replacement
        self.table_prefix = table_prefix
        self.rollback_copy = self.rollback_dir / rollback_stamp() / folder.database.name

    @classmethod
    def from_journal(cls, folder: N8nFolder, journal: RestoreJournal) -> SqliteSlot:
        """The slot of a killed restore, to undo it; refuses a journal naming a copy that is
        not one of this folder's rollback copies (the journal lives where n8n can write)."""
        slot = cls(folder, Path(journal.rollback))
        copy = Path(journal.rollback)
        if (
            copy.parent.parent != slot.rollback_dir
            or copy.name != folder.database.name
            or not re.fullmatch(STAMP, copy.parent.name)
            or any(p.is_symlink() for p in (slot.rollback_dir, copy.parent, copy))
            or copy.resolve().parent.parent != slot.rollback_dir.resolve()
            or not copy.is_file()
        ):
            raise InputError(
                f"the restore journal in {slot.rollback_dir} names {copy}, which is not a rollback "
                "copy of this folder: check it by hand; nothing was changed"
            )
        slot.rollback_copy = copy
        slot.swapped = journal.step in TOUCHED
        return slot

    def tables(self) -> N8nTables:
        return N8nDatabase(self.folder.database, self.table_prefix)

    def rollback(self) -> str:
        return str(self.rollback_copy)

    def clear_leftovers(self) -> list[str]:
        removed = []
        for folder in _rollback_folders(self.rollback_dir):
            if not _is_complete(folder):
                shutil.rmtree(folder)
                removed.append(f"unfinished rollback copy {folder}")
        staged = _staged_database(self.folder)
        if staged.is_file() or staged.is_symlink():
            staged.unlink()
            removed.append(f"staged database {staged}")
        return removed

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
        self.claim_rollback_dir()
        folder = self._new_rollback_folder()
        self.rollback_copy = folder / self.folder.database.name
        # Copied under a hidden name: a copy cut short (killed, disk full) never looks like one.
        partial = folder / f".{self.rollback_copy.name}.partial"
        try:
            online_copy(self.folder.database, partial)
            os.chmod(partial, PRIVATE_FILE_MODE)
            fsync_file(partial)
            partial.replace(self.rollback_copy)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return str(self.rollback_copy)

    def _new_rollback_folder(self) -> Path:
        """A fresh folder per restore, even for two restores within one second."""
        base = self.rollback_copy.parent.name
        for attempt in range(100):
            folder = self.rollback_dir / (base if attempt == 0 else f"{base}-{attempt}")
            try:
                folder.mkdir(mode=0o700)
            except FileExistsError:
                continue
            return folder
        raise InputError(f"too many rollback folders named {base} in {self.rollback_dir}")

    def keep_bounded(self) -> None:
        prune_rollbacks(self.rollback_dir, KEEP_ROLLBACKS, self.rollback_copy.parent)

    def swap(self, on_replace: Callable[[], None] = lambda: None) -> None:
        # n8n is stopped now: copy the previous database again, so that the rollback holds
        # every write n8n made after the first copy (the first stays if this one fails).
        fresh = self.rollback_copy.with_name(f".{self.rollback_copy.name}.fresh")
        try:
            online_copy(self.folder.database, fresh)
            os.chmod(fresh, PRIVATE_FILE_MODE)
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


def rollback_copies(rollback_dir: Path) -> list[Path]:
    """The complete rollback copies in ``rollback_dir``, newest first (never through a link)."""
    if not rollback_dir.is_dir():
        return []
    copies = [
        folder / DATABASE_NAME
        for folder in rollback_dir.iterdir()
        if re.fullmatch(STAMP, folder.name)
        and folder.is_dir()
        and not folder.is_symlink()
        and (folder / DATABASE_NAME).is_file()
        and not (folder / DATABASE_NAME).is_symlink()
    ]
    return sorted(copies, key=lambda p: p.parent.name, reverse=True)


def _rollback_folders(rollback_dir: Path) -> list[Path]:
    """The rollback folders in ``rollback_dir`` (never a link), newest first."""
    if not rollback_dir.is_dir():
        return []
    return sorted(
        (
            p
            for p in rollback_dir.iterdir()
            if re.fullmatch(STAMP, p.name) and p.is_dir() and not p.is_symlink()
        ),
        key=lambda p: p.name,
        reverse=True,
    )


def _is_complete(rollback_folder: Path) -> bool:
    """A rollback folder holds its database once the copy finished (a killed copy leaves the
    folder without one)."""
    return (rollback_folder / DATABASE_NAME).is_file()


def prune_rollbacks(rollback_dir: Path, keep: int, current: Path) -> list[Path]:
    """Remove all but the ``keep`` newest rollback folders (``current`` always stays), and
    folders a killed copy left without a database; never through a link. Returns what was
    removed."""
    folders = _rollback_folders(rollback_dir)
    complete = [p for p in folders if _is_complete(p)]
    unfinished = [p for p in folders if p not in complete]
    removed = [p for p in complete[keep:] + unfinished if p != current]
    for folder in removed:
        shutil.rmtree(folder)
    return removed


def _staged_database(folder: N8nFolder) -> Path:
    """Where ``replace_database`` writes the new database before renaming it into place."""
    return folder.database.with_name(f".{folder.database.name}.restoring")


def replace_database(folder: N8nFolder, source: Path) -> None:
    """Copy ``source`` over n8n's database, keeping owner and mode; drop its side files."""
    live = folder.database
    info = live.stat()
    staged = _staged_database(folder)
    staged.unlink(missing_ok=True)  # a leftover, or a link someone planted: never written through
    try:
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "wb") as out, open(source, "rb") as data:
            shutil.copyfileobj(data, out, COPY_CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.chown(staged, info.st_uid, info.st_gid, follow_symlinks=False)
        os.chmod(staged, info.st_mode & 0o777)
        for suffix in SIDE_FILES:  # a stale WAL would be replayed into the new database
            live.with_name(live.name + suffix).unlink(missing_ok=True)
        pause_point(SWAPPING)
        staged.replace(live)
    except BaseException:
        staged.unlink(missing_ok=True)  # a partial copy must never look like a database
        raise
    fsync_dir(live.parent)
