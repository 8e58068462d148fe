"""The key store: private, atomic, and strict about what it hands out."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from backup.digests import key_fingerprint
from backup.errors import KeyStoreError
from backup.keystore import KeyStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_save_and_load(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    fingerprint = store.save("the-key")
    assert fingerprint == key_fingerprint("the-key")
    assert store.load(fingerprint) == "the-key"
    assert mode(store.root) == 0o700
    assert mode(store.path_for(fingerprint)) == 0o600
    assert store.save("the-key") == fingerprint  # idempotent
    assert [p.name for p in store.root.iterdir()] == [f"{fingerprint}.key"]  # no temp leftovers


def test_missing_key_names_the_fingerprint(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match=f"encryption key {'ab' * 16} is not in the key store"):
        KeyStore(tmp_path).load("ab" * 16)


def test_wrong_content_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    fingerprint = store.save("right")
    store.path_for(fingerprint).write_text("wrong\n")
    with pytest.raises(KeyStoreError, match="does not hold encryption key"):
        store.load(fingerprint)


def test_readable_by_others_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    fingerprint = store.save("k")
    store.path_for(fingerprint).chmod(0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        store.load(fingerprint)


def test_fingerprint_cannot_escape_the_folder(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="invalid key fingerprint"):
        KeyStore(tmp_path).load("../../etc/passwd")


def test_folder_open_to_others_is_closed_with_a_warning_then_refused_if_reopened(
    tmp_path: Path,
) -> None:
    store = KeyStore(tmp_path / "keys")
    (tmp_path / "keys").mkdir(mode=0o777)
    os.chmod(tmp_path / "keys", 0o777)
    said: list[str] = []
    store.prepare(said.append)
    assert said == [
        f"warning: key store {tmp_path / 'keys'} was open to others (mode 777); set 0700"
    ]
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    fingerprint = store.save("k")
    os.chmod(tmp_path / "keys", 0o755)
    with pytest.raises(KeyStoreError, match="is open to others \\(mode 755\\): chmod 700"):
        store.load(fingerprint)


def test_key_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    fingerprint = store.save("k")
    (tmp_path / f"{fingerprint}.key").write_bytes(b"\xff\xfe")
    with pytest.raises(KeyStoreError, match="cannot read key file"):
        store.load(fingerprint)
