"""A second copy of the key store, apart from the snapshots: another restic repository with
its own password, or a plain folder. Keys are only ever added, never replaced or removed."""

from __future__ import annotations

from pathlib import Path

from backup.abandoned import KEYS_FETCH_PREFIX, owned_temp_dir
from backup.errors import KeyStoreError, RepositoryError
from backup.keystore import KEY_SUFFIX, KeyStore
from backup.repository.restic import ResticRepository
from backup.repository.snapshots import restore_folder

KEYS_MARK = "n8n-backup-keys"
KEYS_HOST = "n8n-backup-keys"


def stored_keys(store: KeyStore) -> dict[str, str]:
    """Every key of a key store, fingerprint -> key (each one checked against its name)."""
    if not store.root.is_dir():
        raise KeyStoreError(f"key store {store.root} is not a folder")
    keys = {}
    for path in sorted(store.root.glob(f"*{KEY_SUFFIX}")):
        if path.is_symlink() or not path.is_file():
            continue  # only regular files are keys; a link is not followed
        fingerprint = path.name.removesuffix(KEY_SUFFIX)
        keys[fingerprint] = store.load(fingerprint)
    return keys


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
    """Store the key store in ``repo`` as a new snapshot; the number of keys pushed. Keys the
    repository has and this store lacks are pulled first: the newest pushed store always holds
    every key ever pushed."""
    if repo.snapshots(KEYS_MARK):
        pull(repo, store)
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
    with owned_temp_dir(KEYS_FETCH_PREFIX) as staging:
        restored = restore_folder(repo, newest, Path(staging))
        return copy_keys(KeyStore(restored), store)
