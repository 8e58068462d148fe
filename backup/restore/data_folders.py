"""What a restore puts back beside the database: community and custom nodes (``nodes/``,
``custom/``) and execution binary data (``workflows/`` of n8n's storage root), each swapped
in by one rename, the previous one kept for the rollback.

The snapshot's archives are checked and unpacked before n8n is stopped, each into a staging
folder on the filesystem of its destination (binary data may be on a volume of its own), so
that every swap is a rename. The previous node folders are moved into
``restore-rollback/folders-<stamp>/``, the previous binary data into ``.rollback-<stamp>/`` of
the storage root, and put back if the restore fails.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from backup.manifest import Manifest
from backup.n8n.binary_data import ARCHIVE_NAME as BINARY_ARCHIVE
from backup.n8n.binary_data import unpack as unpack_binary_data
from backup.n8n.extensions import ARCHIVE_NAME as NODES_ARCHIVE
from backup.n8n.extensions import NODE_FOLDERS
from backup.n8n.extensions import unpack as unpack_nodes
from backup.ownership import chown_tree
from backup.restore.database_slot import STAMP

BINARY_FOLDER = "workflows"  # what n8n keeps under its storage root for executions
# Staging folders, named <prefix><stamp>: beside the node folders, and in the storage root.
NODE_STAGING_PREFIX = ".restoring-folders-"
BINARY_STAGING_PREFIX = ".restoring-"


@dataclass(frozen=True)
class _Swap:
    staged: Path
    place: Path
    kept: Path


def _absent(kept: Path) -> Path:
    """The marker saying the place had no folder before the restore."""
    return kept.with_name(f"{kept.name}.absent")


def _put_back(swap: _Swap) -> None:
    """The place as it was before ``swap``: the kept folder back, or none when it had none."""
    moved = swap.kept.exists() or swap.kept.is_symlink()
    absent = _absent(swap.kept)
    if (moved or absent.exists()) and swap.place.exists() and not swap.place.is_symlink():
        shutil.rmtree(swap.place)
    if moved:
        swap.kept.rename(swap.place)
    absent.unlink(missing_ok=True)


@dataclass
class DataFolders:
    """The folders of one restore: staged, swapped in, and back out on a rollback."""

    n8n_folder: Path
    stamp: str
    rollback_dir: Path  # restore-rollback/, where the previous node folders are kept
    binary_root: Path  # where this n8n keeps binary data
    swaps: list[_Swap] = field(default_factory=list)
    done: list[_Swap] = field(default_factory=list)

    @property
    def _node_staging(self) -> Path:
        return self.n8n_folder / f"{NODE_STAGING_PREFIX}{self.stamp}"

    @property
    def _binary_staging(self) -> Path:
        return self.binary_root / f"{BINARY_STAGING_PREFIX}{self.stamp}"

    @property
    def kept_nodes(self) -> Path:
        """Where the previous node folders are kept."""
        return self.rollback_dir / f"folders-{self.stamp}"

    def prepare(self, snapshot_dir: Path, manifest: Manifest) -> list[str]:
        """Check and unpack the snapshot's archives into the staging folders; return what the
        swap will replace. Raises SnapshotError (nothing left behind) on a bad archive."""
        listed = {entry.path for entry in manifest.files}
        owner = os.stat(self.n8n_folder)
        try:
            if NODES_ARCHIVE in listed:
                staging = self._fresh(self._node_staging)
                archive = snapshot_dir / NODES_ARCHIVE
                for name in unpack_nodes(archive, staging, extensions_into_custom=False):
                    if name in NODE_FOLDERS:
                        self.swaps.append(
                            _Swap(staging / name, self.n8n_folder / name, self.kept_nodes / name)
                        )
                chown_tree(staging, owner.st_uid, owner.st_gid)
            if BINARY_ARCHIVE in listed:
                staging = self._fresh(self._binary_staging)
                unpack_binary_data(snapshot_dir / BINARY_ARCHIVE, staging)
                if (staging / BINARY_FOLDER).is_dir():
                    kept = self.binary_root / f".rollback-{self.stamp}" / BINARY_FOLDER
                    place = self.binary_root / BINARY_FOLDER
                    self.swaps.append(_Swap(staging / BINARY_FOLDER, place, kept))
                chown_tree(staging, owner.st_uid, owner.st_gid)
        except BaseException:
            self.discard()
            raise
        return [
            swap.place.name
            if swap.place.parent == self.n8n_folder
            else f"binary data in {swap.place}"
            for swap in self.swaps
        ]

    def clear_leftovers(self) -> list[str]:
        """Before a restore prepares (no restore pending): remove the staging folders that a
        restore killed while it unpacked left behind; say which."""
        removed = []
        for parent, prefix in (
            (self.n8n_folder, NODE_STAGING_PREFIX),
            (self.binary_root, BINARY_STAGING_PREFIX),
        ):
            if not parent.is_dir():
                continue
            for folder in sorted(parent.iterdir()):
                name = folder.name
                if (
                    name.startswith(prefix)
                    and re.fullmatch(STAMP, name.removeprefix(prefix))
                    and folder.is_dir()
                    and not folder.is_symlink()
                ):
                    shutil.rmtree(folder)
                    removed.append(f"staging folder {folder}")
        return removed

    @staticmethod
    def _fresh(folder: Path) -> Path:
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
        return folder

    def swap(self) -> None:
        """Move each current folder aside and the staged one in its place. A place that had
        none gets a marker beside the kept ones, so that a resume knows to empty it again."""
        for swap in self.swaps:
            swap.kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if swap.place.exists() or swap.place.is_symlink():
                swap.place.rename(swap.kept)
            else:
                _absent(swap.kept).touch()
            self.done.append(swap)
            swap.staged.rename(swap.place)

    def swap_back(self) -> None:
        """Undo ``swap``: the restored folders are removed, the previous ones put back."""
        for swap in reversed(self.done):
            _put_back(swap)
        self.done.clear()

    def undo_interrupted(self) -> None:
        """After a killed restore (``restore --resume``): put back whatever a swap had moved,
        at whatever point it stopped, and remove the staging folders."""
        for swap in self._possible_swaps():
            _put_back(swap)
        self.discard()

    def _possible_swaps(self) -> list[_Swap]:
        swaps = [
            _Swap(self._node_staging / name, self.n8n_folder / name, self.kept_nodes / name)
            for name in NODE_FOLDERS
        ]
        kept = self.binary_root / f".rollback-{self.stamp}" / BINARY_FOLDER
        place = self.binary_root / BINARY_FOLDER
        return [*swaps, _Swap(self._binary_staging / BINARY_FOLDER, place, kept)]

    def keep_bounded(self, keep: int) -> None:
        """Keep the previous folders of the ``keep`` newest restores only."""
        for pattern, parent in (
            ("folders-*", self.rollback_dir),
            (".rollback-*", self.binary_root),
        ):
            kept = sorted(
                (p for p in parent.glob(pattern) if p.is_dir() and not p.is_symlink()),
                reverse=True,
            )
            for old in kept[keep:]:
                shutil.rmtree(old)

    def discard(self) -> None:
        """Remove the staging folders (after a swap they are empty)."""
        shutil.rmtree(self._node_staging, ignore_errors=True)
        shutil.rmtree(self._binary_staging, ignore_errors=True)
