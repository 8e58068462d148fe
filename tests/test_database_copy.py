"""The database copy of a snapshot, against a real SQLite writer that never stops: whatever the
journal mode (n8n 1.x: rollback journal, copied byte for byte under a shared lock; 2.x: WAL,
through the backup API), every copy is a whole database at one commit, and its hash is the
hash of the file written."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from pathlib import Path

import pytest

from backup.digests import sha256_file
from backup.n8n.sqlite import copy_database, integrity_problems

ROWS_PER_COMMIT = 50
PREFILLED_ROWS = 20_000  # about 45 MB: copies long enough for commits and checkpoints to land


def _write_forever(path: str, ready: multiprocessing.synchronize.Event) -> None:
    """Commit until killed (another process, as n8n is): each commit adds a batch of rows,
    changes rows all over the file (n8n updates executions in place) and records both in the
    ledger row. In WAL mode a checkpoint runs every few commits, writing into the file while
    it is copied."""
    connection = sqlite3.connect(path, timeout=60)
    connection.execute("PRAGMA wal_autocheckpoint = 20")
    rng = random.Random(1)
    batch = 0
    while True:
        batch += 1
        connection.executemany(
            "INSERT INTO execution (batch, version, data) VALUES (?, 0, ?)",
            [(batch, f"{batch}:" + "x" * 2000)] * ROWS_PER_COMMIT,
        )
        changed = rng.sample(range(1, PREFILLED_ROWS + 1), ROWS_PER_COMMIT)
        connection.executemany(
            "UPDATE execution SET version = version + 1 WHERE id = ?", [(i,) for i in changed]
        )
        connection.execute(
            "UPDATE ledger SET batch = ?, versions = versions + ?", (batch, ROWS_PER_COMMIT)
        )
        connection.commit()
        ready.set()


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_copies_of_a_database_being_written_are_whole_commits(
    tmp_path: Path, journal_mode: str
) -> None:
    source = tmp_path / "database.sqlite"
    with sqlite3.connect(source) as setup:
        setup.execute(f"PRAGMA journal_mode = {journal_mode}")
        setup.execute(
            "CREATE TABLE execution (id INTEGER PRIMARY KEY, batch INT, version INT, data TEXT)"
        )
        setup.execute("CREATE TABLE ledger (batch INT, versions INT)")
        setup.execute("INSERT INTO ledger VALUES (0, 0)")
        setup.executemany(
            "INSERT INTO execution (batch, version, data) VALUES (0, 0, ?)",
            [("0:" + "y" * 2000,)] * PREFILLED_ROWS,
        )
    ready = multiprocessing.get_context("spawn").Event()
    writer = multiprocessing.get_context("spawn").Process(
        target=_write_forever, args=(str(source), ready), daemon=True
    )
    writer.start()
    try:
        assert ready.wait(30), "the writer did not commit"
        batches = []
        for index in range(8):
            copy = tmp_path / f"copy-{index}.sqlite"
            digest = copy_database(source, copy)
            assert copy.stat().st_mode & 0o777 == 0o600
            assert digest is None if journal_mode == "wal" else digest == sha256_file(copy)
            assert integrity_problems(copy) == []
            with sqlite3.connect(copy) as read:
                assert read.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
                rows, last = read.execute(
                    "SELECT COUNT(*), MAX(batch) FROM execution WHERE batch > 0"
                ).fetchone()
                ledger = read.execute("SELECT batch, versions FROM ledger").fetchone()
                (versions,) = read.execute("SELECT SUM(version) FROM execution").fetchone()
                (torn,) = read.execute(
                    "SELECT COUNT(*) FROM execution WHERE data NOT LIKE batch || ':%'"
                ).fetchone()
            assert rows == last * ROWS_PER_COMMIT, "the copy holds part of a commit"
            assert ledger == (last, versions), "changed rows and the ledger are of two commits"
            assert torn == 0, "rows hold data of another row"
            batches.append(last)
            copy.unlink()
    finally:
        writer.kill()
        writer.join()
    assert batches == sorted(batches) and batches[-1] > batches[0], "the writer was held up"
    assert not [p.name for p in tmp_path.glob("copy-*-*")], "a side file was left beside a copy"


def test_an_existing_destination_is_never_overwritten(tmp_path: Path) -> None:
    source = tmp_path / "database.sqlite"
    with sqlite3.connect(source) as setup:
        setup.execute("CREATE TABLE t (x)")
    taken = tmp_path / "copy.sqlite"
    taken.write_text("someone else's file")
    with pytest.raises(FileExistsError):
        copy_database(source, taken)
    assert taken.read_text() == "someone else's file"
