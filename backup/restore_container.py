"""Full restore of a snapshot into an n8n container, made safe.

Order matters: everything that can refuse does so before anything is touched (damaged snapshot,
key mismatch, running executions); the replaced database is kept as a rollback copy; any failure
after the container was stopped puts the old database back and starts the container again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from docker.errors import DockerException
from docker.models.containers import Container

from backup.atomic import PRIVATE_FILE_MODE, fsync_dir, fsync_file, make_private_dir
from backup.check import database_problems, file_problems
from backup.digests import key_fingerprint
from backup.errors import BackupError, InputError, KeyStoreError, SnapshotError
from backup.manifest import Manifest
from backup.n8n_folder import N8nFolder, read_encryption_key
from backup.sources.container import (
    ContainerCli,
    docker_client,
    get_container,
    inspect_n8n_container,
)
from backup.sources.sqlite import N8nDatabase, online_copy
from verify.n8n_side import (
    N8nCheckError,
    credential_mismatches,
    n8n_credential_digests,
    served_workflow_digests,
    usable_api_key,
    workflow_mismatches,
)
from verify.runtime.wait import N8nStartError, wait_until_ready

ROLLBACK_DIR = "restore-rollback"
SIDE_FILES = ("-wal", "-shm", "-journal")
STOP_TIMEOUT_SECONDS = 30


class RestoreError(BackupError):
    """The restore failed; the message says whether the previous database was put back."""


@dataclass(frozen=True)
class RestoreResult:
    """What the operator is told at the end."""

    container: str
    snapshot_id: str
    workflows: int
    credentials: int
    rollback_copy: Path


def _check_snapshot(snapshot_dir: Path) -> Manifest:
    manifest = Manifest.load(snapshot_dir)
    if manifest.database_kind != "sqlite":
        raise InputError(
            f"snapshot {snapshot_dir} is a {manifest.database_kind} dump: a container restore "
            "takes SQLite snapshots"
        )
    problems = file_problems(snapshot_dir, manifest) or database_problems(snapshot_dir, manifest)
    if problems:
        raise SnapshotError(f"snapshot {snapshot_dir} is damaged, not restoring: {problems[0]}")
    return manifest


def _replace_database(target: N8nFolder, replacement: Path) -> None:
    """Put ``replacement`` in place of the database, keeping owner and mode; drop side files."""
    live = target.database
    info = live.stat()
    staged = live.with_name(f".{live.name}.restoring")
    shutil.copyfile(replacement, staged)
    os.chown(staged, info.st_uid, info.st_gid)
    os.chmod(staged, info.st_mode & 0o777)
    fsync_file(staged)
    for suffix in SIDE_FILES:  # a stale WAL would be replayed into the new database
        live.with_name(live.name + suffix).unlink(missing_ok=True)
    staged.replace(live)
    fsync_dir(live.parent)


def restore_into_container(
    snapshot_dir: Path,
    container_name: str,
    *,
    force: bool = False,
    api_url: str | None = None,
    boot_timeout: float = 180.0,
    say: Callable[[str], None] = print,
) -> RestoreResult:
    """Restore ``snapshot_dir`` into the n8n container ``container_name``; see module doc."""
    manifest = _check_snapshot(snapshot_dir)
    source = inspect_n8n_container(container_name)
    if (api_url or source.api_url) is None:
        raise InputError(f"container {container_name} publishes no port for 5678: give --api-url")
    target_key = read_encryption_key(source.folder, source.environment)
    target_fingerprint = key_fingerprint(target_key)
    if target_fingerprint != manifest.key_fingerprint:
        raise KeyStoreError(
            f"snapshot {manifest.snapshot_id} was taken with encryption key "
            f"{manifest.key_fingerprint}, container {container_name} runs with key "
            f"{target_fingerprint}: its credentials would not decrypt. Give the container the "
            f"snapshot's key (key store entry {manifest.key_fingerprint}) and restore again; "
            "nothing was changed"
        )
    running = N8nDatabase(source.folder.database).running_executions()
    if running and not force:
        raise InputError(
            f"{running} execution(s) are running in {container_name}: wait for them to finish, "
            "or pass --force to restore anyway; nothing was changed"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    rollback_dir = make_private_dir(source.folder.path / ROLLBACK_DIR / stamp)
    rollback_copy = rollback_dir / source.folder.database.name
    online_copy(source.folder.database, rollback_copy)
    rollback_copy.chmod(PRIVATE_FILE_MODE)
    say(f"restore: previous database kept at {rollback_copy}")

    with docker_client() as client:
        container = get_container(client, container_name)
        step = "stopping the container"
        try:
            container.stop(timeout=STOP_TIMEOUT_SECONDS)
            step = "replacing the database"
            _replace_database(source.folder, snapshot_dir / manifest.database_file)
            step = "starting the container"
            container.start()
            step = "waiting for n8n"
            url = _wait(container, api_url, boot_timeout)
            step = "checking workflows and credentials"
            workflows, credentials = _check_restored(
                container, source.folder, url, manifest, target_key
            )
        except (BackupError, DockerException, N8nStartError, N8nCheckError, OSError) as exc:
            _roll_back(container, source.folder, rollback_copy, api_url, boot_timeout)
            raise RestoreError(
                f"restore failed while {step}: {exc}; the previous database was put back "
                f"and {container_name} started again"
            ) from None
    return RestoreResult(
        container_name, manifest.snapshot_id, workflows, credentials, rollback_copy
    )


def _wait(container: Container, api_url: str | None, timeout: float) -> str:
    """Wait for n8n after a start; return its URL (a published port can change on restart)."""
    container.reload()
    url = api_url or inspect_n8n_container(str(container.name)).api_url
    if url is None:
        raise N8nStartError(f"container {container.name} publishes no port for 5678")

    def running() -> bool:
        container.reload()
        return bool(container.status == "running")

    def tail() -> str:
        lines = container.logs(tail=5).decode("utf-8", errors="replace").splitlines()
        return " | ".join(line.strip() for line in lines if line.strip())

    wait_until_ready(url, timeout, running, tail)
    return url


def _check_restored(
    container: Container, folder: N8nFolder, url: str, manifest: Manifest, key: str
) -> tuple[int, int]:
    database = N8nDatabase(folder.database)
    api_key = usable_api_key(url, database, manifest.key_fingerprint)
    served = served_workflow_digests(url, api_key, [w.id for w in manifest.workflows])
    problems = workflow_mismatches(manifest, served)
    digests = n8n_credential_digests(ContainerCli(container), key, manifest.key_fingerprint)
    problems += credential_mismatches(manifest, digests)
    if problems:
        raise N8nCheckError(f"{len(problems)} problem(s), first: {problems[0]}")
    return len(manifest.workflows), len(digests)


def _roll_back(
    container: Container,
    folder: N8nFolder,
    rollback_copy: Path,
    api_url: str | None,
    timeout: float,
) -> None:
    try:
        container.stop(timeout=STOP_TIMEOUT_SECONDS)
        _replace_database(folder, rollback_copy)
        container.start()
        _wait(container, api_url, timeout)
    except (DockerException, N8nStartError, OSError) as exc:
        raise RestoreError(
            f"restore failed and so did putting the previous database back ({exc}): it is at "
            f"{rollback_copy}; stop the container and copy it to {folder.database}"
        ) from None
