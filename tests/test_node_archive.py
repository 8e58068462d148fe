"""The node archive is untrusted input: every member is checked before anything is unpacked."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

from backup.errors import SnapshotError, SourceError
from backup.n8n.extensions import ARCHIVE_NAME, unpack, write_archive


def _archive(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member, content in members:
            if content is not None:
                member.size = len(content)
            tar.addfile(member, io.BytesIO(content) if content is not None else None)
    return path


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"module.exports = {};"


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = target
    return member, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    member = tarfile.TarInfo(name)
    member.type = kind
    return member, None


@pytest.mark.parametrize(
    ("member", "said"),
    [
        (_file("/etc/cron.d/evil"), "is an absolute path"),
        (_file("nodes/../../outside.js"), "climbs out with '..'"),
        (_file("elsewhere/file.js"), "is outside"),
        (_link("nodes/link", "/etc/passwd"), "points to the absolute path"),
        (_link("nodes/node_modules/link", "../../custom/x"), "leads out of nodes/"),
        (_link("custom/hard", "custom/a.js", tarfile.LNKTYPE), "is a hard link"),
        (_special("nodes/dev", tarfile.CHRTYPE), "is a device"),
        (_special("nodes/fifo", tarfile.FIFOTYPE), "is a device, a pipe"),
    ],
    ids=["absolute", "dotdot", "outside", "abs-link", "link-out", "hardlink", "device", "fifo"],
)
def test_hostile_members_are_refused_and_nothing_is_unpacked(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], said: str
) -> None:
    archive = _archive(tmp_path / ARCHIVE_NAME, _file("custom/a.js"), member)
    target = tmp_path / "restored" / ".n8n"
    target.mkdir(parents=True)
    with pytest.raises(SnapshotError, match=re.escape(said)):
        unpack(archive, target)
    assert sorted(p.name for p in target.iterdir()) == [], "something was unpacked"
    assert not (tmp_path / "outside.js").exists()


def test_garbage_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / ARCHIVE_NAME
    archive.write_bytes(b"\x1f\x8b not really gzip" * 100)
    with pytest.raises(SnapshotError, match=r"is not a readable tar\.gz archive"):
        unpack(archive, tmp_path)


def test_round_trip_with_links_inside_and_extension_folders(tmp_path: Path) -> None:
    source = tmp_path / "source" / ".n8n"
    package = source / "nodes" / "node_modules" / "pkg"
    package.mkdir(parents=True)
    (package / "index.js").write_text("module.exports = {};")
    (source / "nodes" / "node_modules" / ".bin").mkdir()
    (source / "nodes" / "node_modules" / ".bin" / "pkg").symlink_to("../pkg/index.js")
    (source / "custom").mkdir()
    (source / "custom" / "a.node.js").write_text("//")
    extension = tmp_path / "extension"
    extension.mkdir()
    (extension / "b.node.js").write_text("//")
    archive = tmp_path / ARCHIVE_NAME
    archived = write_archive(source, [extension, tmp_path / "absent"], archive)
    assert archived == ["custom", "nodes", "extensions/0"]
    assert archive.stat().st_mode & 0o777 == 0o600
    target = tmp_path / "restored"
    target.mkdir()
    assert unpack(archive, target) == ["custom", "nodes", "extensions/0"]
    assert (target / "nodes" / "node_modules" / ".bin" / "pkg").read_text().startswith("module")
    assert (target / "custom" / "extension-0" / "b.node.js").is_file()
    assert not (target / ".unpacking-nodes").exists()


def test_nothing_to_archive_writes_nothing(tmp_path: Path) -> None:
    archive = tmp_path / ARCHIVE_NAME
    assert write_archive(None, [], archive) == []
    assert not archive.exists()


def test_a_snapshot_refuses_nodes_its_restore_would_refuse(tmp_path: Path) -> None:
    """An npm-linked custom node (a link out of .n8n) fails the snapshot, in one line,
    rather than making a snapshot whose node archive no restore accepts."""
    source = tmp_path / ".n8n"
    (source / "custom").mkdir(parents=True)
    elsewhere = tmp_path / "dev" / "my-node"
    elsewhere.mkdir(parents=True)
    (source / "custom" / "my-node").symlink_to(elsewhere)
    archive = tmp_path / ARCHIVE_NAME
    with pytest.raises(SourceError, match=r"custom/my-node.*points to the absolute path"):
        write_archive(source, [], archive)
    assert not archive.exists() and not list(tmp_path.glob(".*.tmp"))
