"""Rollback copies in n8n's folder stay bounded (no n8n needed)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from backup.database_slot import SqliteSlot, prune_rollbacks
from backup.n8n_folder import locate


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
