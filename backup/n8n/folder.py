"""Locating an n8n data folder (``.n8n``) and the encryption key that goes with it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from backup.errors import InputError, KeyStoreError
from backup.n8n.sqlite import DATABASE_NAME

CONFIG_NAME = "config"
KEY_ENV = "N8N_ENCRYPTION_KEY"


@dataclass(frozen=True)
class N8nFolder:
    """An n8n user folder: ``path`` is the ``.n8n`` folder itself."""

    path: Path

    @property
    def database(self) -> Path:
        """The SQLite database file."""
        return self.path / DATABASE_NAME

    @property
    def config(self) -> Path:
        """n8n's config file, which holds the encryption key unless the environment sets it."""
        return self.path / CONFIG_NAME


def locate(path: Path, *, with_database: bool = True) -> N8nFolder:
    """Accept the ``.n8n`` folder or its parent; refuse anything that is not an n8n folder.

    ``with_database=False`` is for n8n on PostgreSQL: the folder then only has the config.
    """
    if not path.exists():
        raise InputError(f"n8n folder {path} does not exist: give the .n8n folder of your n8n")
    if not path.is_dir():
        raise InputError(f"{path} is not a folder: give the .n8n folder of your n8n")
    marker = DATABASE_NAME if with_database else CONFIG_NAME
    for candidate in (path, path / ".n8n"):
        if (candidate / marker).is_file():
            return N8nFolder(candidate)
    if not with_database:
        raise InputError(
            f"{path} is not an n8n folder: no {CONFIG_NAME} in it or in {path / '.n8n'}"
        )
    raise InputError(
        f"{path} is not an n8n folder: no {DATABASE_NAME} in it or in {path / '.n8n'} "
        "(n8n on PostgreSQL needs --postgres)"
    )


def read_encryption_key(folder: N8nFolder | None, environ: dict[str, str] | None = None) -> str:
    """The key n8n uses: N8N_ENCRYPTION_KEY when set (n8n's own precedence), else the config.

    ``folder`` may be None for n8n on PostgreSQL when only the environment has the key.
    """
    env = os.environ if environ is None else environ
    from_env = env.get(KEY_ENV, "").strip()
    from_config = _key_from_config(folder.config) if folder is not None else ""
    if from_env and from_config and from_env != from_config:
        raise KeyStoreError(
            f"{KEY_ENV} differs from the key in {folder.config if folder else 'the config'}; "
            "n8n refuses to start like that: unset the variable or set it to the instance's key"
        )
    key = from_env or from_config
    if not key:
        where = f"{folder.config} has none and " if folder is not None else ""
        raise KeyStoreError(
            f"no encryption key: {where}{KEY_ENV} is not set; "
            f"set {KEY_ENV} to the key your n8n runs with, or give --n8n-folder"
        )
    return key


def _key_from_config(config: Path) -> str:
    if not config.is_file():
        return ""
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("encryptionKey", "")
    except (OSError, ValueError, AttributeError):
        raise KeyStoreError(
            f"{config} is not n8n's JSON config file: check the n8n folder"
        ) from None
    return str(value).strip()
