"""A second copy of the key store, apart from the snapshots: another restic repository with
its own password, or a plain folder. Keys are only ever added, never replaced or removed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from backup.atomic import PRIVATE_DIR_MODE, make_private_dir
from backup.errors import KeyStoreError, RepositoryError
from backup.keystore import KEY_SUFFIX, KeyStore
from backup.repository.restic import ResticRepository

KEYS_MARK = "n8n-backup-keys"
KEYS_HOST = "n8n-backup-keys"


def stored_keys(store: KeyStore) -> dict[str, str]:
    """Every key of a key store, fingerprint -> key (each one checked against its name)."""
    if not store.root.is_dir():
        raise KeyStoreError(f"key store {store.root} is not a folder")
    return {
        path.name.removesuffix(KEY_SUFFIX): store.load(path.name.removesuffix(KEY_SUFFIX))
        for path in sorted(store.root.glob(f"*{KEY_SUFFIX}"))
    }


def copy_keys(source: KeyStore, target: KeyStore) -> int:
    """Add the keys ``target`` lacks; how many were added."""
    keys = stored_keys(source)
    added = 0
    target.prepare(lambda message: None)
    for fingerprint, key in keys.items():
        if not target.path_for(fingerprint).exists():
            target.save(key)
            added += 1
    return added


def push(store: KeyStore, repo: ResticRepository) -> int:
    """Store the whole key store in ``repo`` (as one snapshot); the number of keys pushed."""
    keys = stored_keys(store)
    if not keys:
        raise KeyStoreError(f"key store {store.root} holds no key: nothing to push")
    repo.backup(store.root, [KEYS_MARK], host=KEYS_HOST)
    return len(keys)


def pull(repo: ResticRepository, store: KeyStore) -> int:
    """Add the keys of ``repo``'s newest key-store snapshot to ``store``; how many were added."""
    pushed = repo.snapshots(KEYS_MARK)
    if not pushed:
        raise RepositoryError(
            f"the restic repository {repo.shown} holds no key store: push one with "
            "`n8n-backup keys push`"
        )
    newest = pushed[-1]
    with tempfile.TemporaryDirectory(prefix="n8n-keys-") as staging:
        os.chmod(staging, PRIVATE_DIR_MODE)
        repo.restore(newest.id, Path(staging))
        restored = Path(staging) / Path(newest.paths[0] if newest.paths else "-").name
        if restored.is_symlink() or not restored.is_dir():
            raise RepositoryError(f"restic snapshot {newest.short_id} holds no key store folder")
        make_private_dir(restored)
        for path in restored.iterdir():
            os.chmod(path, 0o600)
        return copy_keys(KeyStore(restored), store)


def key_count(store: KeyStore) -> int:
    """How many keys a store holds (their values are not read)."""
    return len(list(store.root.glob(f"*{KEY_SUFFIX}"))) if store.root.is_dir() else 0
