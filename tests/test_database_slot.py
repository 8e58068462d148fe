"""Rollback copies and the restore journal in n8n's folder (no n8n needed)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from backup.errors import InputError
from backup.n8n.folder import locate
from backup.n8n.postgres import PostgresTarget
from backup.restore import database_slot
from backup.restore.database_slot import ROLLBACK_DIR, SqliteSlot, prune_rollbacks, rollback_copies
from backup.restore.journal import PREPARED, REPLACED, RestoreJournal
from backup.restore.postgres_slot import PostgresSlot


def test_only_the_newest_rollback_copies_stay(tmp_path: Path) -> None:
    names = [f"2026112{day}T000000Z" for day in range(1, 7)]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "database.sqlite").write_bytes(b"x")
    (tmp_path / "in-progress.json").write_text("{}")
    outside = tmp_path.parent / "outside-keep"
    outside.mkdir(exist_ok=True)
    (tmp_path / "zz-link").symlink_to(outside)

    removed = prune_rollbacks(tmp_path, 3, tmp_path / names[0])

    assert sorted(p.name for p in removed) == names[1:3]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([names[0], *names[3:], "in-progress.json", "zz-link"])
    assert outside.is_dir()


def test_rolling_back_an_untouched_database_changes_nothing(tmp_path: Path) -> None:
    """Interrupted before the live database was replaced: the rollback must not overwrite it
    with the copy taken while n8n still ran (that would lose every later write)."""
    folder_path = tmp_path / ".n8n"
    folder_path.mkdir()
    live = folder_path / "database.sqlite"
    with closing(sqlite3.connect(live)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
    slot = SqliteSlot(locate(folder_path), live)
    slot.prepare()
    with closing(sqlite3.connect(live)) as conn:
        conn.execute("INSERT INTO t VALUES ('written after the first copy')")
        conn.commit()
    slot.swap_back()
    with closing(sqlite3.connect(live)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (1,)


def make_folder(tmp_path: Path) -> Path:
    folder_path = tmp_path / ".n8n"
    folder_path.mkdir()
    with closing(sqlite3.connect(folder_path / "database.sqlite")) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
    return folder_path


def test_rollback_copies_are_ours_while_we_work_then_owned_like_the_data(
    tmp_path: Path,
) -> None:
    """While the restore works in restore-rollback/ (as root), n8n's user cannot swap its files
    for links; when it is done, the kept copies are owned like the rest of n8n's data."""
    folder_path = make_folder(tmp_path)
    os.chown(folder_path, 1000, 1000)
    slot = SqliteSlot(locate(folder_path), folder_path / "database.sqlite")
    copy = Path(slot.prepare())
    slot.record("n8n", "snap", PREPARED)
    journal = copy.parent.parent / "in-progress.json"
    for path in (copy, copy.parent, copy.parent.parent, journal):
        assert path.stat().st_uid == os.getuid(), path
    assert copy.parent.parent.stat().st_mode & 0o777 == 0o700
    slot.forget()
    slot.hand_over()
    for path in (copy, copy.parent, copy.parent.parent):
        assert (path.stat().st_uid, path.stat().st_gid) == (1000, 1000), path
    assert rollback_copies(folder_path / ROLLBACK_DIR) == [copy]
    second = SqliteSlot(locate(folder_path), folder_path / "database.sqlite")
    assert Path(second.prepare()).parent != copy.parent, "two restores in one second collide"


def test_links_planted_in_n8ns_folder_are_never_followed(tmp_path: Path) -> None:
    """restore-rollback/ replaced by a link is refused; a link planted where the staged copy
    goes is removed, not written through."""
    folder_path = make_folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    os.chmod(elsewhere, 0o755)
    (folder_path / ROLLBACK_DIR).symlink_to(elsewhere)
    slot = SqliteSlot(locate(folder_path), folder_path / "database.sqlite")
    with pytest.raises(InputError, match="is a link or not a folder"):
        slot.prepare()
    assert list(elsewhere.iterdir()) == [] and elsewhere.stat().st_mode & 0o777 == 0o755
    (folder_path / ROLLBACK_DIR).unlink()
    victim = tmp_path / "victim"
    victim.write_text("not yours")
    (folder_path / ".database.sqlite.restoring").symlink_to(victim)
    snapshot_copy = tmp_path / "snapshot.sqlite"
    with closing(sqlite3.connect(snapshot_copy)) as conn:
        conn.execute("CREATE TABLE snap (x)")
        conn.commit()
    database_slot.replace_database(locate(folder_path), snapshot_copy)
    assert victim.read_text() == "not yours"
    with closing(sqlite3.connect(folder_path / "database.sqlite")) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("snap",)]


def test_a_copy_cut_short_leaves_nothing_that_looks_like_a_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder_path = make_folder(tmp_path)

    def disk_full(source: Path, destination: Path) -> None:
        destination.write_bytes(b"")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(database_slot, "online_copy", disk_full)
    with pytest.raises(OSError):
        SqliteSlot(locate(folder_path), folder_path / "database.sqlite").prepare()
    assert list((folder_path / ROLLBACK_DIR).iterdir()) == []
    # A folder a killed copy left behind (no database in it) is pruned, and never listed.
    leftover = folder_path / ROLLBACK_DIR / "20261101T000000Z"
    leftover.mkdir()
    (leftover / ".database.sqlite.partial").write_bytes(b"")
    assert rollback_copies(folder_path / ROLLBACK_DIR) == []
    assert prune_rollbacks(folder_path / ROLLBACK_DIR, 3, folder_path / "none") == [leftover]


def test_the_next_restore_clears_what_a_killed_one_left(tmp_path: Path) -> None:
    """What a restore killed while preparing leaves (an unfinished rollback copy, a staged
    database) goes before the next one prepares; complete rollback copies and links stay."""
    folder_path = make_folder(tmp_path)
    complete = Path(SqliteSlot(locate(folder_path), folder_path / "database.sqlite").prepare())
    leftover = folder_path / ROLLBACK_DIR / "20261101T000000Z"
    leftover.mkdir()
    (leftover / ".database.sqlite.partial").write_bytes(b"cut short")
    staged = folder_path / ".database.sqlite.restoring"
    staged.write_bytes(b"cut short")
    outside = tmp_path / "outside"
    outside.mkdir()
    (folder_path / ROLLBACK_DIR / "20261102T000000Z").symlink_to(outside)

    removed = SqliteSlot(locate(folder_path), folder_path / "database.sqlite").clear_leftovers()

    assert removed == [f"unfinished rollback copy {leftover}", f"staged database {staged}"]
    assert complete.is_file() and not leftover.exists() and not staged.exists()
    assert outside.is_dir() and (folder_path / ROLLBACK_DIR / "20261102T000000Z").is_symlink()


def test_a_journal_naming_a_foreign_file_is_refused(tmp_path: Path) -> None:
    """The journal lives where n8n (or anyone with its volume) can write: resume must only
    ever copy one of this folder's rollback copies over the database."""
    folder_path = make_folder(tmp_path)
    foreign = tmp_path / "elsewhere" / "20261101T000000Z" / "database.sqlite"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"not n8n")
    journal = RestoreJournal("n8n", "snap", str(foreign), REPLACED)
    with pytest.raises(InputError, match="not a rollback copy of this folder"):
        SqliteSlot.from_journal(locate(folder_path), journal)


def test_a_journal_naming_another_database_is_refused(tmp_path: Path) -> None:
    folder = locate(make_folder(tmp_path))
    target = PostgresTarget.from_dsn("postgresql://n8n@127.0.0.1:1/n8n")
    journal = RestoreJournal(
        "n8n", "snap", "customers", REPLACED, "postgres", "n8n", "n8n_restoring_20261101t000000z"
    )
    with pytest.raises(InputError, match="not a rollback database of 'n8n'"):
        PostgresSlot.from_journal(target, folder, journal)
    other = RestoreJournal("n8n", "snap", "x", REPLACED, "postgres", "billing", "y")
    with pytest.raises(InputError, match="give the DSN of 'billing'"):
        PostgresSlot.from_journal(target, folder, other)


def test_a_journal_mixing_two_restores_is_refused(tmp_path: Path) -> None:
    """Staging and rollback names from different restores: renaming by them could put an old
    rollback database in place and drop the live one."""
    folder = locate(make_folder(tmp_path))
    target = PostgresTarget.from_dsn("postgresql://n8n@127.0.0.1:1/n8n")
    journal = RestoreJournal(
        "n8n",
        "snap",
        "n8n_rollback_20261101t000000z",
        REPLACED,
        "postgres",
        "n8n",
        "n8n_restoring_20261127t000000z",
    )
    with pytest.raises(InputError, match="two different restores"):
        PostgresSlot.from_journal(target, folder, journal)
