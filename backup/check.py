"""Offline checks of a snapshot folder against its manifest (no n8n needed).

Each check returns a list of problems in plain words; an empty list means it holds. The folder
is untrusted: nothing is followed through a link, and nothing outside it is read.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from backup.digests import credential_digest, sha256_file, workflow_digest
from backup.errors import SnapshotError
from backup.manifest import MANIFEST_NAME, WORKFLOWS_DIR, FileEntry, Manifest, authenticate
from backup.n8n.cipher import CredentialDecryptError, decrypt_credential_data
from backup.n8n.sqlite import integrity_problems
from backup.n8n.tables import N8nTables
from backup.secret import Secret

MAX_EXPORT_BYTES = 64 << 20


def _entry_problem(snapshot_dir: Path, entry: FileEntry) -> str | None:
    """Why one listed file is not what the manifest says, or None when it is."""
    path = snapshot_dir
    for part in Path(entry.path).parts:  # manifest paths are relative and ".."-free
        path = path / part
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return f"{entry.path} is missing"
        if stat.S_ISLNK(info.st_mode):
            return f"{path.relative_to(snapshot_dir).as_posix()} is a symbolic link (not followed)"
    if not stat.S_ISREG(info.st_mode):
        return f"{entry.path} is not a regular file"
    if info.st_size != entry.size:
        return (
            f"{entry.path} has {info.st_size} bytes, the manifest says {entry.size} "
            "(truncated or modified)"
        )
    if sha256_file(path) != entry.sha256:
        return f"{entry.path} does not match its sha256 in the manifest (modified)"
    return None


def database_file_problems(snapshot_dir: Path, manifest: Manifest) -> list[str]:
    """The database file alone: listed, in the folder, a regular file with its size and sha256."""
    entry = next((e for e in manifest.files if e.path == manifest.database_file), None)
    if entry is None:
        return [f"the manifest does not list the database file {manifest.database_file}"]
    problem = _entry_problem(snapshot_dir, entry)
    return [problem] if problem else []


def _unlisted_problems(snapshot_dir: Path, listed: set[str]) -> list[str]:
    """Anything in the folder that the manifest does not list: files, links, empty folders."""
    problems: list[str] = []
    for folder, dirs, files in os.walk(snapshot_dir):  # never descends through a link
        here = Path(folder)
        if here != snapshot_dir and not dirs and not files:
            problems.append(f"{here.relative_to(snapshot_dir).as_posix()}/ is an empty folder")
        for name in sorted([*dirs, *files]):
            path = here / name
            relative = path.relative_to(snapshot_dir).as_posix()
            if path.is_symlink():
                if relative not in listed:  # a listed one is reported as such
                    problems.append(f"{relative} is a symbolic link, not listed in the manifest")
            elif name in files and relative != MANIFEST_NAME and relative not in listed:
                kind = "file" if path.is_file() else "special file"
                problems.append(f"{relative} is a {kind} not listed in the manifest")
    return problems


def file_problems(
    snapshot_dir: Path, manifest: Manifest, database_file: list[str] | None = None
) -> list[str]:
    """Every listed file is present with its size and sha256, nothing unlisted is there, and
    every workflow export is the workflow the database copy holds. ``database_file``: what
    :func:`database_file_problems` already found (the largest file is not hashed again)."""
    problems = list(
        database_file_problems(snapshot_dir, manifest) if database_file is None else database_file
    )
    for entry in manifest.files:
        if entry.path != manifest.database_file and (
            problem := _entry_problem(snapshot_dir, entry)
        ):
            problems.append(problem)
    problems.extend(_unlisted_problems(snapshot_dir, {entry.path for entry in manifest.files}))
    return problems or export_problems(snapshot_dir, manifest)


def export_problems(snapshot_dir: Path, manifest: Manifest) -> list[str]:
    """Each workflow export file is listed and holds that workflow, with the nodes and
    connections whose digest the manifest records from the database copy."""
    listed = {entry.path: entry.size for entry in manifest.files}
    exports = {w.export_file for w in manifest.workflows if w.export_file is not None}
    problems = [
        f"{path} is not the export of any workflow in the manifest"
        for path in listed
        if path.startswith(f"{WORKFLOWS_DIR}/") and path not in exports
    ]
    for workflow in manifest.workflows:
        if workflow.export_file is None:
            continue
        label = f"workflow {workflow.id} ({workflow.name!r})"
        size = listed.get(workflow.export_file)
        if size is None:
            problems.append(f"{label}: export {workflow.export_file} is not listed")
            continue
        if size > MAX_EXPORT_BYTES:
            problems.append(f"{label}: export {workflow.export_file} is larger than any workflow")
            continue
        try:
            body = json.loads((snapshot_dir / workflow.export_file).read_bytes())
        except (OSError, ValueError):
            problems.append(f"{label}: export {workflow.export_file} is not JSON")
            continue
        if not isinstance(body, dict) or str(body.get("id")) != workflow.id:
            problems.append(f"{label}: export {workflow.export_file} holds another workflow")
        elif workflow_digest(body.get("nodes"), body.get("connections")) != workflow.digest:
            problems.append(
                f"{label}: export {workflow.export_file} differs from the database copy"
            )
    return problems


def database_problems(snapshot_dir: Path, manifest: Manifest) -> list[str]:
    """The database file reads as what it claims to be: SQLite's integrity_check for a copy,
    pg_restore --list for a PostgreSQL dump."""
    path = snapshot_dir / manifest.database_file
    if manifest.database_kind == "postgres":
        from backup.n8n.postgres import dump_problems

        return dump_problems(path)
    return [f"integrity_check: {message}" for message in integrity_problems(path)]


def count_problems(
    manifest: Manifest, database: N8nTables, copied_digests: Mapping[str, str] | None = None
) -> list[str]:
    """The manifest's counts agree with its own lists and with the database copy, and its
    workflow digests with the copy's workflows (``copied_digests``, by workflow id, when the
    caller has read them already)."""
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
    if copied_digests is None:
        copied_digests = {
            row.id: workflow_digest(row.nodes, row.connections) for row in database.iter_workflows()
        }
    copied = dict(copied_digests)
    for workflow in manifest.workflows:
        digest = copied.pop(workflow.id, None)
        if digest is None:
            problems.append(
                f"workflow {workflow.id} ({workflow.name!r}) of the manifest is not in the "
                "database copy"
            )
        elif digest != workflow.digest:
            problems.append(
                f"workflow {workflow.id} ({workflow.name!r}) in the database copy differs from "
                "its digest in the manifest"
            )
    problems.extend(f"workflow {wid} of the database copy is not in the manifest" for wid in copied)
    return problems


def credential_problems(
    manifest: Manifest, database: N8nTables, encryption_key: Secret
) -> list[str]:
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
            decrypted = decrypt_credential_data(row.data, encryption_key.reveal(), data_keys)
        except CredentialDecryptError:
            undecryptable += 1
            continue
        if credential_digest(decrypted, encryption_key.reveal()) != entry.digest:
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


def trusted_snapshot(snapshot_dir: Path, encryption_key: Secret) -> Manifest:
    """The manifest of a snapshot that is authentic and whole, for a restore to act on.

    Raises SnapshotError naming the first problem; nothing has been changed anywhere then.
    """
    try:
        manifest = authenticate(snapshot_dir, encryption_key.reveal())
    except SnapshotError as exc:
        raise SnapshotError(f"snapshot {snapshot_dir} is not restored: {exc}") from None
    problems = file_problems(snapshot_dir, manifest) or database_problems(snapshot_dir, manifest)
    if problems:
        raise SnapshotError(f"snapshot {snapshot_dir} is damaged, not restoring: {problems[0]}")
    return manifest
