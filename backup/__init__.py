"""Consistent snapshots of a running n8n, with its encryption key kept in a separate store."""

from backup.errors import BackupError
from backup.keystore import KeyStore
from backup.manifest import Manifest, find_snapshots
from backup.snapshot import SnapshotRequest, create_snapshot

__all__ = [
    "BackupError",
    "KeyStore",
    "Manifest",
    "SnapshotRequest",
    "create_snapshot",
    "find_snapshots",
]
