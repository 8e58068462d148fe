"""Taking a snapshot: database copy, API export, custom nodes, manifest; renamed when complete."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backup.atomic import (
    PRIVATE_FILE_MODE,
    fsync_dir,
    fsync_file,
    make_private_dir,
    write_bytes_atomic,
)
from backup.data_lock import exclusive
from backup.digests import (
    credential_digest,
    entity_row_hash,
    key_fingerprint,
    sha256_file,
    workflow_digest,
)
from backup.errors import (
    ApiError,
    InputError,
    KeyStoreError,
    PgDumpError,
    SourceError,
    SqliteBackupError,
)
from backup.execution_guard import wait_for_idle
from backup.keystore import KeyStore
from backup.manifest import (
    INSTANCE_NAME,
    MANIFEST_NAME,
    WORKFLOWS_DIR,
    BinaryData,
    Counts,
    CredentialEntry,
    EntityEntry,
    FileEntry,
    Manifest,
    PackageEntry,
    WorkflowEntry,
)
from backup.n8n.api import N8nApi
from backup.n8n.binary_data import ARCHIVE_NAME as BINARY_ARCHIVE
from backup.n8n.binary_data import MAX_LISTED_MISSING, referenced_paths
from backup.n8n.binary_data import write_archive as write_binary_archive
from backup.n8n.cipher import CredentialDecryptError, DataKey, decrypt_credential_data
from backup.n8n.entities import entity_rows, row_label
from backup.n8n.extensions import ARCHIVE_NAME, write_archive
from backup.n8n.folder import N8nFolder, read_encryption_key
from backup.n8n.sqlite import DATABASE_NAME, N8nDatabase, copy_database, integrity_problems
from backup.n8n.tables import CommunityPackage, CredentialRow, N8nTables
from backup.progress import progress

if TYPE_CHECKING:
    from backup.n8n.postgres import PostgresTarget

INCOMPLETE_PREFIX = ".incomplete-"
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_SLUG = 60


@dataclass(frozen=True)
class SnapshotRequest:
    """What to back up and where to put it."""

    n8n_folder: N8nFolder | None
    api: N8nApi
    out_dir: Path
    key_store: KeyStore
    table_prefix: str = ""
    postgres: PostgresTarget | None = None
    wait_timeout: float = 300.0
    force: bool = False
    say: Callable[[str], None] = field(default=lambda message: None, repr=False)
    # Where N8N_ENCRYPTION_KEY is looked up: the container's environment, or ours when None.
    key_environ: dict[str, str] | None = field(default=None, repr=False)
    # N8N_CUSTOM_EXTENSIONS folders of the source, readable from here.
    extension_folders: tuple[Path, ...] = ()
    # Where the source keeps execution binary data (filesystem mode), most specific first.
    binary_roots: tuple[Path, ...] = ()
    instance: str | None = None  # which n8n this is; None: instance_label of the API URL


def instance_label(api_url: str) -> str | None:
    """The default name of the n8n a snapshot comes from: its API URL's host and port."""
    host = urllib.parse.urlsplit(api_url).netloc.rsplit("@", 1)[-1]
    return host if INSTANCE_NAME.fullmatch(host) else None


def new_snapshot_id(now: datetime | None = None) -> str:
    """Sortable, unique id: UTC time plus a random suffix."""
    moment = now or datetime.now(UTC)
    return f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def safe_file_stem(workflow_id: str, name: str) -> str:
    """A file name stem that is safe whatever the workflow is called (no path, no dot-start)."""
    slug = _UNSAFE_NAME_CHARS.sub("_", name).strip("._")[:_MAX_SLUG] or "workflow"
    safe_id = _UNSAFE_NAME_CHARS.sub("_", workflow_id).strip("._") or "id"
    return f"{safe_id}-{slug}"


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (both already resolved)."""
    return path == folder or folder in path.parents


def check_locations(request: SnapshotRequest) -> None:
    """Refuse places where a snapshot would endanger the key, n8n's data or itself."""
    out = request.out_dir.resolve()
    keys = request.key_store.root.resolve()
    if out == keys:
        raise InputError(
            f"--snapshots and --key-store are the same folder {out}: keep the key store apart "
            "from the snapshots (a snapshot alone must not open its credentials)"
        )
    if _inside(keys, out):
        raise InputError(
            f"--key-store {keys} is inside --snapshots {out}: the key would sit beside the "
            "snapshots and prune could delete it; give a key store outside the snapshot folder"
        )
    if _inside(out, keys):
        raise InputError(
            f"--snapshots {out} is inside --key-store {keys}: give a snapshot folder outside it"
        )
    if request.n8n_folder is not None:
        data = request.n8n_folder.path.resolve()
        if _inside(out, data) or _inside(data, out):
            raise InputError(
                f"--snapshots {out} overlaps n8n's data folder {data}: snapshots would be archived "
                "into later snapshots and n8n's folder permissions changed; give a folder "
                "outside n8n's data"
            )


def _make_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--snapshots {out_dir} is not a folder: give a folder for snapshots")
    try:
        make_private_dir(out_dir)
    except OSError as exc:
        raise InputError(f"cannot create --snapshots {out_dir}: {exc.strerror}") from None


def create_snapshot(request: SnapshotRequest) -> Path:
    """Take a snapshot and return its folder; nothing named like a snapshot exists until done,
    and no snapshot exists without its key in the key store."""
    check_locations(request)
    encryption_key = read_encryption_key(request.n8n_folder, request.key_environ)
    request.api.check_access()  # nothing is written before the API answered
    source_version = request.api.version()
    # One n8n-backup at a time per data folder (a restore swaps the database under it).
    with contextlib.ExitStack() as locks:
        if request.n8n_folder is not None:
            locks.enter_context(exclusive(request.n8n_folder.path, "snapshot"))
        request.key_store.prepare(request.say)
        _make_out_dir(request.out_dir)
        forced_with = wait_for_idle(
            request.api, request.wait_timeout, force=request.force, say=request.say
        )
        snapshot_id = new_snapshot_id()
        staging = make_private_dir(request.out_dir / f"{INCOMPLETE_PREFIX}{snapshot_id}")
        try:
            manifest = _fill_staging(staging, snapshot_id, source_version, encryption_key, request)
            manifest = replace(manifest, forced_with_running_executions=forced_with)
            write_bytes_atomic(staging / MANIFEST_NAME, manifest.to_json(encryption_key).encode())
            # The key is stored before the snapshot gets its name: never a snapshot without a key.
            request.key_store.save(encryption_key)
            final = request.out_dir / snapshot_id
            staging.rename(final)
            fsync_dir(request.out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final


@dataclass(frozen=True)
class CopiedWorkflow:
    """A workflow as the database copy holds it, as the manifest records it (nodes digested)."""

    id: str
    name: str
    active: bool
    digest: str


@dataclass(frozen=True)
class ExportedFile:
    """A workflow the API exported, as written to the staging folder."""

    relative: str
    digest: str


@dataclass(frozen=True)
class DatabaseContents:
    """What the manifest records from the database, read from the captured state."""

    workflows: list[CopiedWorkflow]
    credentials: list[CredentialRow]
    community_packages: list[CommunityPackage]
    entities: dict[str, EntityEntry]
    binary_paths: list[str]
    executions: int
    data_keys: dict[str, DataKey]
    server_version: str | None


def _read_contents(
    tables: N8nTables, encryption_key: str, binary_paths: Callable[[], list[str]] | None = None
) -> DatabaseContents:
    """Read what the manifest records, one row at a time: a workflow's nodes and an entity's
    row are dropped once digested, so memory does not grow with them. ``binary_paths``: the
    binary files the executions refer to, when another reader looks for them meanwhile."""
    return DatabaseContents(
        [
            CopiedWorkflow(
                row.id, row.name, row.active, workflow_digest(row.nodes, row.connections)
            )
            for row in tables.iter_workflows()
        ],
        tables.credentials(),
        tables.community_packages(),
        {name: _entity_entry(name, rows, encryption_key) for name, rows in entity_rows(tables)},
        binary_paths() if binary_paths is not None else referenced_paths(tables),
        tables.count("execution_entity"),
        tables.data_keys(),
        tables.server_version(),
    )


@dataclass(frozen=True)
class CapturedDatabase:
    """The database file or dump in the staging folder, and what was read from it."""

    file: FileEntry
    kind: str
    contents: DatabaseContents


def _capture_database(
    staging: Path, request: SnapshotRequest, encryption_key: str
) -> CapturedDatabase:
    """Copy or dump the database into ``staging`` and read what the manifest records."""
    if request.postgres is None:
        return _capture_sqlite(staging, request, encryption_key)
    from backup.n8n.postgres import DUMP_NAME, dump_consistently, dump_problems

    dump = staging / DUMP_NAME
    contents = dump_consistently(
        request.postgres, dump, lambda tables: _read_contents(tables, encryption_key)
    )
    problems = dump_problems(dump)
    if problems:
        raise PgDumpError(f"the dump fails its check: {problems[0]}")
    dump.chmod(PRIVATE_FILE_MODE)
    fsync_file(dump)
    return CapturedDatabase(_file_entry(staging, dump), "postgres", contents)


def _capture_sqlite(
    staging: Path, request: SnapshotRequest, encryption_key: str
) -> CapturedDatabase:
    assert request.n8n_folder is not None
    copy = staging / DATABASE_NAME
    copied_digest = copy_database(request.n8n_folder.database, copy)
    # The integrity check, the hash (unless the copy's read made it) and the reading each read
    # the copy once, side by side (sqlite3 and hashlib release the GIL), while the copy is
    # flushed to disk.
    copied = N8nDatabase(copy, request.table_prefix)
    with ThreadPoolExecutor(4, thread_name_prefix="snapshot-check") as checks:
        flushed = checks.submit(fsync_file, copy)
        integrity = checks.submit(integrity_problems, copy)
        hashing = checks.submit(sha256_file, copy) if copied_digest is None else None
        # The scan of the execution data for binary references reads as much as the copy
        # holds: its own reader, beside the others.
        scanning = checks.submit(referenced_paths, copied)
        read_error: SqliteBackupError | None = None
        try:
            contents = _read_contents(copied, encryption_key, scanning.result)
        except SqliteBackupError as exc:
            read_error = exc
        if problems := integrity.result():  # on a damaged copy, says best what is wrong
            raise SqliteBackupError(f"the database copy fails integrity_check: {problems[0]}")
        if read_error is not None:
            raise read_error
        digest = hashing.result() if hashing is not None else copied_digest
        flushed.result()
    assert digest is not None
    return CapturedDatabase(
        FileEntry(DATABASE_NAME, digest, copy.stat().st_size), "sqlite", contents
    )


def _export_workflows(staging: Path, api: N8nApi) -> dict[str, ExportedFile]:
    """Write every workflow the API lists to the staging folder as its page arrives; keep only
    each one's file name and digest (the bodies are not held in memory). The folder is made
    here; it is removed again if it stays empty."""
    make_private_dir(staging / WORKFLOWS_DIR)
    exported: dict[str, ExportedFile] = {}
    for body in progress(api.iter_workflows(), "exporting workflows"):
        workflow_id = str(body["id"])
        relative = f"{WORKFLOWS_DIR}/{safe_file_stem(workflow_id, str(body.get('name')))}.json"
        earlier = exported.get(workflow_id)
        if earlier is not None and earlier.relative != relative:  # listed twice, renamed between
            (staging / earlier.relative).unlink(missing_ok=True)
        _write_workflow(staging / relative, body)
        exported[workflow_id] = ExportedFile(relative, _exported_digest(body))
    return exported


def _fill_staging(
    staging: Path,
    snapshot_id: str,
    source_version: str,
    encryption_key: str,
    request: SnapshotRequest,
) -> Manifest:
    # Export first, capture second: a workflow created in between is then in the database copy
    # and is fetched alone below; one deleted in between is dropped. The copy is what restores.
    exported = _export_workflows(staging, request.api)
    captured = _capture_database(staging, request, encryption_key)
    contents = captured.contents
    workflows = [
        WorkflowEntry(
            id=workflow.id,
            name=workflow.name,
            active=workflow.active,
            digest=workflow.digest,
            export_file=_settle_export(staging, workflow, exported, request.api),
        )
        for workflow in progress(contents.workflows, "writing workflow files")
    ]
    for left in exported.values():  # deleted between the export and the copy
        (staging / left.relative).unlink(missing_ok=True)
    if (staging / WORKFLOWS_DIR).is_dir():
        fsync_dir(staging / WORKFLOWS_DIR)  # the renames and removals of the settling
    with contextlib.suppress(OSError):  # a snapshot without workflow files has no such folder
        (staging / WORKFLOWS_DIR).rmdir()
    credentials = [
        _credential_entry(row, encryption_key, contents.data_keys) for row in contents.credentials
    ]
    try:
        node_folders = _archive_node_folders(staging, request)
        binary = write_binary_archive(
            contents.binary_paths, list(request.binary_roots), staging / BINARY_ARCHIVE
        )
    except OSError as exc:
        raise SourceError(
            f"cannot read {exc.filename or 'a file'} of n8n's nodes or binary data "
            f"({exc.strerror or type(exc).__name__}): run n8n-backup as a user who can read "
            "n8n's folder"
        ) from None
    return Manifest(
        snapshot_id=snapshot_id,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source_n8n_version=source_version,
        database_kind=captured.kind,
        database_file=captured.file.path,
        key_fingerprint=key_fingerprint(encryption_key),
        counts=Counts(
            workflows=len(workflows),
            credentials=len(credentials),
            executions=contents.executions,
        ),
        workflows=workflows,
        credentials=credentials,
        files=_file_entries(staging, captured.file),
        table_prefix=request.table_prefix,
        database_schema=request.postgres.schema if request.postgres else None,
        database_server_version=contents.server_version,
        community_packages=[
            PackageEntry(package.name, package.version, list(package.node_types))
            for package in contents.community_packages
        ],
        node_folders=node_folders,
        instance=request.instance or instance_label(request.api.base_url),
        entities=contents.entities,
        binary_data=(
            BinaryData(binary.files, binary.missing[:MAX_LISTED_MISSING], len(binary.missing))
            if contents.binary_paths
            else None
        ),
    )


def _entity_entry(name: str, rows: Iterator[list[Any]], encryption_key: str) -> EntityEntry:
    """One kind's row hashes, with the names of its rows where the kind has names."""
    hashes = []
    labels = {}
    for row in rows:
        row_hash = entity_row_hash(row, encryption_key)
        hashes.append(row_hash)
        if (label := row_label(name, row)) is not None:
            labels[row_hash] = label
    return EntityEntry(sorted(hashes), labels)


def _exported_digest(body: dict[str, Any]) -> str:
    return workflow_digest(body.get("nodes"), body.get("connections"))


def _write_workflow(path: Path, body: dict[str, Any]) -> None:
    write_bytes_atomic(path, json.dumps(body, indent=2, ensure_ascii=False).encode("utf-8"))


def _settle_export(
    staging: Path, workflow: CopiedWorkflow, exported: dict[str, ExportedFile], api: N8nApi
) -> str | None:
    """The export file of ``workflow``, only when it holds the version the database copy holds:
    the exported one (renamed if the workflow was renamed since), or fetched again alone."""
    relative = f"{WORKFLOWS_DIR}/{safe_file_stem(workflow.id, workflow.name)}.json"
    written = exported.pop(workflow.id, None)
    if written is not None and written.digest == workflow.digest:
        if written.relative != relative:
            (staging / written.relative).rename(staging / relative)
        return relative
    if written is not None:  # edited during the export
        (staging / written.relative).unlink(missing_ok=True)
    try:
        body = api.workflow(workflow.id)
    except ApiError:
        return None  # in the database copy but no longer served (deleted or archived)
    if _exported_digest(body) != workflow.digest:
        return None  # edited again since the copy: the copy is what restores
    _write_workflow(staging / relative, body)
    return relative


def _credential_entry(
    row: CredentialRow, encryption_key: str, data_keys: dict[str, DataKey]
) -> CredentialEntry:
    try:
        decrypted = decrypt_credential_data(row.data, encryption_key, data_keys)
    except CredentialDecryptError:
        raise KeyStoreError(
            f"credential {row.id} ({row.name!r}) does not decrypt with the instance's encryption "
            "key: the key in the config or N8N_ENCRYPTION_KEY is not the one this database uses"
        ) from None
    return CredentialEntry(
        id=row.id, name=row.name, type=row.type, digest=credential_digest(decrypted, encryption_key)
    )


def _archive_node_folders(staging: Path, request: SnapshotRequest) -> list[str]:
    """Archive community and custom nodes; return the folders the archive holds."""
    folder = request.n8n_folder.path if request.n8n_folder is not None else None
    return write_archive(folder, list(request.extension_folders), staging / ARCHIVE_NAME)


def _file_entry(staging: Path, path: Path) -> FileEntry:
    return FileEntry(
        path=path.relative_to(staging).as_posix(),
        sha256=sha256_file(path),
        size=path.stat().st_size,
    )


def _file_entries(staging: Path, database: FileEntry) -> list[FileEntry]:
    """Every file of the snapshot but the manifest; the database's entry as its capture made it
    (its hash is not read again)."""
    return [
        database
        if path.relative_to(staging).as_posix() == database.path
        else _file_entry(staging, path)
        for path in sorted(staging.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    ]
