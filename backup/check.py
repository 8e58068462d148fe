"""Offline checks of a snapshot folder against its manifest (no n8n needed).

Each check returns a list of problems in plain words; an empty list means it holds.
"""

from __future__ import annotations

from pathlib import Path

from backup.cipher import CredentialDecryptError, decrypt_credential_data
from backup.digests import credential_digest, sha256_file
from backup.manifest import MANIFEST_NAME, Manifest
from backup.sources.postgres import dump_problems
from backup.sources.sqlite import integrity_problems
from backup.sources.tables import N8nTables


def file_problems(snapshot_dir: Path, manifest: Manifest) -> list[str]:
    """Every listed file is present with its size and sha256, and nothing unlisted is there."""
    problems: list[str] = []
    listed = {entry.path for entry in manifest.files}
    for entry in manifest.files:
        path = snapshot_dir / entry.path
        if not path.is_file():
            problems.append(f"{entry.path} is missing")
        elif path.stat().st_size != entry.size:
            problems.append(
                f"{entry.path} has {path.stat().st_size} bytes, the manifest says {entry.size} "
                "(truncated or modified)"
            )
        elif sha256_file(path) != entry.sha256:
            problems.append(f"{entry.path} does not match its sha256 in the manifest (modified)")
    for path in sorted(snapshot_dir.rglob("*")):
        relative = path.relative_to(snapshot_dir).as_posix()
        if path.is_file() and relative != MANIFEST_NAME and relative not in listed:
            problems.append(f"{relative} is not listed in the manifest")
    if manifest.database_file not in listed:
        problems.append(f"the manifest does not list the database file {manifest.database_file}")
    return problems


def database_problems(snapshot_dir: Path, manifest: Manifest) -> list[str]:
    """The database file reads as what it claims to be: SQLite's integrity_check for a copy,
    pg_restore --list for a PostgreSQL dump."""
    path = snapshot_dir / manifest.database_file
    if manifest.database_kind == "postgres":
        return dump_problems(path)
    return [f"integrity_check: {message}" for message in integrity_problems(path)]


def count_problems(manifest: Manifest, database: N8nTables) -> list[str]:
    """The manifest's counts agree with its own lists and with the database copy."""
    problems: list[str] = []
    counts = manifest.counts
    listed = {"workflows": len(manifest.workflows), "credentials": len(manifest.credentials)}
    for kind, number in listed.items():
        if getattr(counts, kind) != number:
            problems.append(
                f"the manifest counts {getattr(counts, kind)} {kind} but lists {number}"
            )
    in_database = {
        "workflows": database.count("workflow_entity"),
        "credentials": database.count("credentials_entity"),
        "executions": database.count("execution_entity"),
    }
    for kind, number in in_database.items():
        claimed = getattr(counts, kind)
        if claimed != number:
            problems.append(f"the manifest counts {claimed} {kind}, the database copy has {number}")
    return problems


def credential_problems(manifest: Manifest, database: N8nTables, encryption_key: str) -> list[str]:
    """Every credential of the copy decrypts with ``encryption_key`` to the manifest's digest."""
    expected = {entry.id: entry for entry in manifest.credentials}
    data_keys = database.data_keys()
    problems: list[str] = []
    undecryptable = 0
    for row in database.credentials():
        entry = expected.pop(row.id, None)
        if entry is None:
            problems.append(f"credential {row.id} ({row.name!r}) is not in the manifest")
            continue
        try:
            decrypted = decrypt_credential_data(row.data, encryption_key, data_keys)
        except CredentialDecryptError:
            undecryptable += 1
            continue
        if credential_digest(decrypted, encryption_key) != entry.digest:
            problems.append(f"credential {row.id} ({row.name!r}) decrypts to different data")
    if undecryptable:
        problems.insert(
            0,
            f"{undecryptable} credential(s) do not decrypt with encryption key "
            f"{manifest.key_fingerprint} from the key store: it is the wrong key for this snapshot",
        )
    problems.extend(
        f"credential {entry.id} ({entry.name!r}) is missing from the database copy"
        for entry in expected.values()
    )
    return problems
