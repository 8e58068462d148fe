"""A folder of encryption keys, one file per key, named by the key's fingerprint.

The key store is kept apart from snapshots on purpose: a snapshot alone must not be enough to
read the credentials it holds. Folder 0700, files 0600, written atomically.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from backup.atomic import PRIVATE_FILE_MODE, make_private_dir, write_text_atomic
from backup.digests import FINGERPRINT_HEX_CHARS, key_fingerprint
from backup.errors import InputError, KeyStoreError

KEY_SUFFIX = ".key"


class KeyStore:
    """Encryption keys stored by fingerprint under one private folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, fingerprint: str) -> Path:
        """Where the key with this fingerprint lives (or would live)."""
        if not (len(fingerprint) == FINGERPRINT_HEX_CHARS and fingerprint.isalnum()):
            raise KeyStoreError(f"invalid key fingerprint {fingerprint!r} in the manifest")
        return self.root / f"{fingerprint}{KEY_SUFFIX}"

    def prepare(self, say: Callable[[str], None]) -> None:
        """Before a snapshot copies anything: the key store is a private folder we can write.

        A folder open to others is closed (0700) with a warning.
        """
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"key store {self.root} is not a folder: give a folder path")
        if self.root.is_dir():
            mode = stat.S_IMODE(self.root.stat().st_mode)
            if mode & 0o077:
                say(f"warning: key store {self.root} was open to others (mode {mode:o}); set 0700")
        try:
            make_private_dir(self.root)
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise KeyStoreError(
                f"key store {self.root} is not writable ({exc.strerror}): give a folder this user "
                "can write; nothing was copied"
            ) from None

    def save(self, encryption_key: str) -> str:
        """Store ``encryption_key``; return its fingerprint. Saving a key twice is harmless.

        Call :meth:`prepare` first: it checks the folder before anything else is written."""
        make_private_dir(self.root)
        fingerprint = key_fingerprint(encryption_key)
        path = self.path_for(fingerprint)
        if not path.exists():
            write_text_atomic(path, encryption_key + "\n", PRIVATE_FILE_MODE)
        return fingerprint

    def load(self, fingerprint: str) -> str:
        """Return the key with ``fingerprint``; raise KeyStoreError naming the key otherwise."""
        path = self.path_for(fingerprint)
        with contextlib.suppress(OSError):
            folder_mode = stat.S_IMODE(os.stat(self.root).st_mode)
            if folder_mode & 0o077:
                raise KeyStoreError(
                    f"key store {self.root} is open to others (mode {folder_mode:o}): "
                    f"chmod 700 {self.root}"
                )
        if not path.is_file():
            raise KeyStoreError(
                f"encryption key {fingerprint} is not in the key store {self.root}: "
                "restore needs the key that was saved with the snapshot"
            )
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            raise KeyStoreError(
                f"key file {path} is readable by others (mode {mode:o}): chmod 600 it"
            )
        try:
            encryption_key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyStoreError(f"cannot read key file {path}: {exc}") from None
        if key_fingerprint(encryption_key) != fingerprint:
            raise KeyStoreError(
                f"key file {path} does not hold encryption key {fingerprint} "
                "(its fingerprint differs): the key store entry is wrong or damaged"
            )
        return encryption_key
