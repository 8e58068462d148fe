"""The node and binary folders a restore swaps in beside the database, and how they are put
back: by the restore itself on failure, and by restore --resume after it was killed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from backup.manifest import FileEntry
from backup.n8n.binary_data import ARCHIVE_NAME as BINARY_ARCHIVE
from backup.n8n.binary_data import write_archive as write_binary_archive
from backup.n8n.extensions import ARCHIVE_NAME as NODES_ARCHIVE
from backup.n8n.extensions import write_archive as write_nodes_archive
from backup.restore.data_folders import DataFolders

BINARY = "workflows/wf1/executions/7/binary_data/21670acc-10b0-47d3-99eb-09e9fb65acc3"


def _snapshot(tmp_path: Path) -> tuple[Path, Any]:
    """A snapshot folder with both archives: custom/ and nodes/ from a source, one binary file."""
    source = tmp_path / "source" / ".n8n"
    (source / "custom" / "probe").mkdir(parents=True)
    (source / "custom" / "probe" / "index.js").write_text("// snapshot's custom")
    (source / "nodes" / "node_modules" / "pkg").mkdir(parents=True)
    (source / "nodes" / "node_modules" / "pkg" / "index.js").write_text("// snapshot's pkg")
    (source / "storage" / BINARY).parent.mkdir(parents=True)
    (source / "storage" / BINARY).write_bytes(b"snapshot bytes")
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    write_nodes_archive(source, [], snapshot / NODES_ARCHIVE)
    copy = write_binary_archive([BINARY], [source / "storage"], snapshot / BINARY_ARCHIVE)
    assert not copy.missing
    files = [FileEntry(name, "0" * 64, 0) for name in (NODES_ARCHIVE, BINARY_ARCHIVE)]
    return snapshot, SimpleNamespace(files=files)


def _live(tmp_path: Path) -> Path:
    """n8n's folder before the restore: its own custom/ and binary data, no nodes/."""
    live = tmp_path / "live" / ".n8n"
    (live / "custom").mkdir(parents=True)
    (live / "custom" / "mine.js").write_text("// the instance's own")
    (live / "storage" / "workflows" / "old").mkdir(parents=True)
    (live / "storage" / "workflows" / "old" / "file").write_bytes(b"old bytes")
    return live


def _folders(live: Path, stamp: str = "20261127T040000Z") -> DataFolders:
    return DataFolders(live, stamp, live / "restore-rollback", live / "storage")


def _state(live: Path) -> dict[str, str]:
    return {
        str(path.relative_to(live)): path.read_text(errors="replace")
        for path in sorted(live.rglob("*"))
        if path.is_file() and "restore-rollback" not in path.parts and ".rollback-" not in str(path)
    }


@pytest.mark.parametrize("undo", ["rollback", "resume after a kill"])
def test_swapped_folders_are_put_back_exactly(tmp_path: Path, undo: str) -> None:
    snapshot, manifest = _snapshot(tmp_path)
    live = _live(tmp_path)
    before = _state(live)
    folders = _folders(live)
    replaced = folders.prepare(snapshot, manifest)
    assert replaced[:2] == ["custom", "nodes"] and replaced[2].startswith("binary data in ")
    folders.swap()
    assert (live / "nodes" / "node_modules" / "pkg" / "index.js").is_file()
    assert (live / "storage" / BINARY).read_bytes() == b"snapshot bytes"
    assert not (live / "custom" / "mine.js").exists()
    if undo == "rollback":
        folders.swap_back()
        folders.discard()
    else:  # a new process that knows only the journal's stamp and binary root
        _folders(live).undo_interrupted()
    assert _state(live) == before
    assert not (live / "nodes").exists(), "nodes/ did not exist before the restore"
    assert not list(live.glob(".restoring-*")) and not list(live.glob("storage/.restoring-*"))


def test_resume_before_any_swap_changes_nothing(tmp_path: Path) -> None:
    snapshot, manifest = _snapshot(tmp_path)
    live = _live(tmp_path)
    before = _state(live)
    _folders(live).prepare(snapshot, manifest)  # killed right after staging
    _folders(live).undo_interrupted()
    assert _state(live) == before
    assert not list(live.glob(".restoring-*"))


def test_the_next_restore_clears_staging_a_killed_one_left(tmp_path: Path) -> None:
    snapshot, manifest = _snapshot(tmp_path)
    live = _live(tmp_path)
    _folders(live).prepare(snapshot, manifest)  # killed right after staging, before a journal
    staged = [
        live / ".restoring-folders-20261127T040000Z",
        live / "storage/.restoring-20261127T040000Z",
    ]
    assert all(folder.is_dir() for folder in staged)
    (live / ".restoring-mine").mkdir()  # not a name of ours
    (live / "storage" / ".restoring-20261127T050000Z").symlink_to(tmp_path / "source")

    removed = _folders(live, "20261127T060000Z").clear_leftovers()

    assert removed == [f"staging folder {folder}" for folder in staged]
    assert not any(folder.exists() for folder in staged)
    assert (live / ".restoring-mine").is_dir(), "not a name of ours"
    assert (tmp_path / "source" / ".n8n" / "custom").is_dir(), "removed through a link"
