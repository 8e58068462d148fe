"""What a restore puts back beside the database: community and custom nodes (``nodes/``,
``custom/``) and execution binary data, each swapped in by one rename, the previous folder
kept for the rollback.

The snapshot's archives are checked and unpacked into a staging folder inside n8n's folder
before n8n is stopped (same filesystem: every swap is a rename). The previous folders are
moved into ``restore-rollback/folders-<stamp>/`` and put back if the restore fails.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from backup.manifest import Manifest
from backup.n8n.binary_data import ARCHIVE_NAME as BINARY_ARCHIVE
from backup.n8n.binary_data import RESTORED_FOLDER
from backup.n8n.binary_data import unpack as unpack_binary_data
from backup.n8n.extensions import ARCHIVE_NAME as NODES_ARCHIVE
from backup.n8n.extensions import NODE_FOLDERS
from backup.n8n.extensions import unpack as unpack_nodes

STAGING_PREFIX = ".restoring-folders-"


def _chown_all(path: Path, owner: tuple[int, int]) -> None:
    """chown a tree to n8n's owner, never following a link."""
    os.chown(path, *owner, follow_symlinks=False)
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), *owner, follow_symlinks=False)


@dataclass
class DataFolders:
    """The folders of one restore: staged, swapped in, and back out on a rollback."""

    n8n_folder: Path
    rollback_dir: Path  # restore-rollback/folders-<stamp>
    binary_target: Path  # where this n8n reads binary data
    staging: Path = field(init=False)
    swapped: list[tuple[Path, Path | None]] = field(default_factory=list)  # (place, kept)

    def __post_init__(self) -> None:
        self.staging = self.n8n_folder / f"{STAGING_PREFIX}{self.rollback_dir.name}"

    def prepare(self, snapshot_dir: Path, manifest: Manifest) -> list[str]:
        """Check and unpack the snapshot's archives into the staging folder; return the
        folders the swap will replace. Raises SnapshotError (staging removed) on a bad one."""
        listed = {entry.path for entry in manifest.files}
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(mode=0o700)
        try:
            names: list[str] = []
            if NODES_ARCHIVE in listed:
                names += [
                    name
                    for name in unpack_nodes(snapshot_dir / NODES_ARCHIVE, self.staging)
                    if name in NODE_FOLDERS
                ]
            if BINARY_ARCHIVE in listed:
                unpack_binary_data(snapshot_dir / BINARY_ARCHIVE, self.staging)
                names.append(RESTORED_FOLDER)
        except BaseException:
            self.discard()
            raise
        owner = os.stat(self.n8n_folder)
        _chown_all(self.staging, (owner.st_uid, owner.st_gid))
        return names

    def _place(self, name: str) -> Path:
        return self.binary_target if name == RESTORED_FOLDER else self.n8n_folder / name

    def swap(self) -> None:
        """Move each current folder into the rollback folder and the staged one in its place."""
        self.rollback_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for staged in sorted(self.staging.iterdir()):
            place = self._place(staged.name)
            kept: Path | None = None
            if place.exists() or place.is_symlink():
                kept = self.rollback_dir / staged.name
                place.rename(kept)
            self.swapped.append((place, kept))
            place.parent.mkdir(parents=True, exist_ok=True)
            staged.rename(place)

    def swap_back(self) -> None:
        """Undo ``swap``: the restored folders are removed, the previous ones put back."""
        for place, kept in reversed(self.swapped):
            if place.exists() and not place.is_symlink():
                shutil.rmtree(place)
            if kept is not None:
                kept.rename(place)
        self.swapped.clear()

    def keep_bounded(self, keep: int) -> None:
        """Keep the previous folders of the ``keep`` newest restores only."""
        kept = sorted(
            (
                path
                for path in self.rollback_dir.parent.glob("folders-*")
                if path.is_dir() and not path.is_symlink()
            ),
            reverse=True,
        )
        for old in kept[keep:]:
            shutil.rmtree(old)

    def discard(self) -> None:
        """Remove the staging folder (after a swap it is empty)."""
        shutil.rmtree(self.staging, ignore_errors=True)
