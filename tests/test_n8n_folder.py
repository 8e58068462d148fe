"""Finding the .n8n folder and its encryption key, with n8n's own precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from backup.errors import InputError, KeyStoreError
from backup.n8n.folder import locate, read_encryption_key


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    n8n = tmp_path / ".n8n"
    n8n.mkdir()
    (n8n / "database.sqlite").write_bytes(b"")
    return n8n


def test_parent_or_folder(folder: Path) -> None:
    assert locate(folder).path == folder
    assert locate(folder.parent).path == folder


def test_file_is_not_a_folder(folder: Path) -> None:
    with pytest.raises(InputError, match="is not a folder"):
        locate(folder / "database.sqlite")


def test_key_from_config_or_environment(folder: Path) -> None:
    (folder / "config").write_text('{"encryptionKey": "from-config"}')
    assert read_encryption_key(locate(folder), {}) == "from-config"
    env = {"N8N_ENCRYPTION_KEY": "from-config"}
    assert read_encryption_key(locate(folder), env) == "from-config"
    (folder / "config").unlink()
    assert read_encryption_key(locate(folder), {"N8N_ENCRYPTION_KEY": "only-env"}) == "only-env"


def test_conflicting_keys_are_refused_without_showing_them(folder: Path) -> None:
    (folder / "config").write_text('{"encryptionKey": "config-key-value"}')
    with pytest.raises(KeyStoreError, match="differs from the key in") as info:
        read_encryption_key(locate(folder), {"N8N_ENCRYPTION_KEY": "env-key-value"})
    assert "config-key-value" not in str(info.value) and "env-key-value" not in str(info.value)


def test_no_key_anywhere(folder: Path) -> None:
    with pytest.raises(KeyStoreError, match="no encryption key"):
        read_encryption_key(locate(folder), {})


def test_config_that_is_not_json(folder: Path) -> None:
    (folder / "config").write_text("encryptionKey=abc")
    with pytest.raises(KeyStoreError, match="is not n8n's JSON config file"):
        read_encryption_key(locate(folder), {})
