"""Restoring a snapshot into a throwaway n8n user folder, made inert before n8n boots."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from backup.abandoned import RESTORE_PREFIX, owned_temp_dir
from backup.atomic import PRIVATE_FILE_MODE, make_private_dir, write_text_atomic
from backup.errors import BackupError
from backup.manifest import Manifest
from backup.n8n.binary_data import ARCHIVE_NAME as BINARY_ARCHIVE
from backup.n8n.binary_data import RESTORED_FOLDER as RESTORED_BINARY_FOLDER
from backup.n8n.binary_data import unpack as unpack_binary_data
from backup.n8n.extensions import ARCHIVE_NAME, unpack
from backup.n8n.folder import CONFIG_NAME
from backup.n8n.sqlite import DATABASE_NAME, N8nDatabase
from backup.secret import Secret


@dataclass
class RestoredFolder:
    """A private temporary n8n user folder; ``n8n_folder`` is its ``.n8n``."""

    user_folder: Path
    _tmp: tempfile.TemporaryDirectory[str]
    node_folders: list[str] = field(default_factory=list)  # unpacked from the node archive

    @property
    def n8n_folder(self) -> Path:
        """The ``.n8n`` folder n8n reads."""
        return self.user_folder / ".n8n"

    @property
    def database(self) -> Path:
        """The restored SQLite database."""
        return self.n8n_folder / DATABASE_NAME

    def cleanup(self) -> None:
        """Remove the folder and everything n8n wrote into it."""
        self._tmp.cleanup()


def restore_to_temp(
    snapshot_dir: Path, manifest: Manifest, encryption_key: Secret
) -> RestoredFolder:
    """Copy the snapshot's database into a new private folder, with the key in n8n's config,
    and unpack its community and custom nodes and its execution binary data there, where n8n
    reads them.

    The copy's workflows are deactivated and its waiting executions cancelled, so that booting
    it cannot fire a trigger, a schedule or a poller. Raises BackupError (the folder removed)
    when the copy cannot be made inert or the node archive is refused.
    """
    tmp = owned_temp_dir(RESTORE_PREFIX)  # a run killed outright leaves it to the next one
    user_folder = Path(tmp.name)
    n8n_folder = make_private_dir(user_folder / ".n8n")
    config = n8n_folder / CONFIG_NAME
    write_text_atomic(config, json.dumps({"encryptionKey": encryption_key.reveal()}))
    restored = RestoredFolder(user_folder=user_folder, _tmp=tmp)
    try:
        listed = {entry.path for entry in manifest.files}
        if ARCHIVE_NAME in listed:
            restored.node_folders = unpack(snapshot_dir / ARCHIVE_NAME, n8n_folder)
        if BINARY_ARCHIVE in listed:
            unpack_binary_data(snapshot_dir / BINARY_ARCHIVE, n8n_folder / RESTORED_BINARY_FOLDER)
        if manifest.database_kind == "sqlite":  # a PostgreSQL dump is restored into a server
            database = n8n_folder / DATABASE_NAME
            shutil.copyfile(snapshot_dir / manifest.database_file, database, follow_symlinks=False)
            database.chmod(PRIVATE_FILE_MODE)
            N8nDatabase(database, manifest.table_prefix).deactivate()
    except BackupError:
        restored.cleanup()
        raise
    return restored
