"""Full restore of a snapshot into an n8n container, made safe.

Order matters: everything that can refuse does so before anything is touched (damaged snapshot,
wrong kind of database, key mismatch, running executions); the replaced database is kept (a
rollback copy of the SQLite file, or the renamed PostgreSQL database); any failure after the
container was stopped puts the old database back and starts the container again.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backup.extras import missing_extra

try:
    from docker.errors import DockerException
    from docker.models.containers import Container
except ImportError as exc:  # an optional part of the install
    raise missing_extra("docker", exc) from None

from backup.check import trusted_snapshot
from backup.data_lock import exclusive
from backup.digests import key_fingerprint
from backup.errors import (
    BackupError,
    InputError,
    KeyStoreError,
    N8nCheckError,
    N8nStartError,
    RestoreError,
    RestoreInterrupted,
    SnapshotError,
)
from backup.interrupts import interrupts_as_keyboard_interrupt, interrupts_ignored
from backup.manifest import Manifest
from backup.n8n.binary_data import RESTORED_FOLDER as RESTORED_BINARY_FOLDER
from backup.n8n.container import (
    BootingContainer,
    ContainerCli,
    ContainerSource,
    containers_sharing_data,
    data_on_tmpfs,
    docker_client,
    get_container,
    inspect_n8n_container,
    runs_n8n,
    stops_since,
)
from backup.n8n.folder import N8nFolder, read_encryption_key
from backup.n8n.instances.readiness import wait_until_ready
from backup.n8n.tables import N8nTables
from backup.restore.checks import credentials_decrypted, workflows_served
from backup.restore.data_folders import DataFolders
from backup.restore.database_slot import (
    KEEP_ROLLBACKS,
    ROLLBACK_DIR,
    STAMP,
    DatabaseSlot,
    SqliteSlot,
    rollback_stamp,
)
from backup.restore.fault_points import STAGED, STARTED, STOPPED, SWAPPED, pause_point
from backup.restore.journal import (
    PREPARED,
    REPLACED,
    REPLACING,
    STOPPING,
    RestoreJournal,
    read_journal,
)
from backup.secret import Secret

if TYPE_CHECKING:
    from backup.n8n.postgres import PostgresTarget

STOP_TIMEOUT_SECONDS = 30


def _database_errors() -> tuple[type[Exception], ...]:
    """The errors a database slot can raise besides ours: psycopg's, when it is installed."""
    try:
        import psycopg
    except ImportError:
        return (OSError,)
    return (OSError, psycopg.Error)


@dataclass(frozen=True)
class RestoreResult:
    """What the operator is told at the end."""

    container: str
    snapshot_id: str
    workflows: int
    credentials: int
    rollback: str  # where the replaced database is kept


def _check_kind(snapshot_dir: Path, manifest: Manifest, postgres: PostgresTarget | None) -> None:
    expected = "postgres" if postgres else "sqlite"
    if manifest.database_kind != expected:
        hint = "give --postgres DSN" if manifest.database_kind == "postgres" else "drop --postgres"
        raise InputError(
            f"snapshot {snapshot_dir} holds a {manifest.database_kind} database: {hint}"
        )


@dataclass(frozen=True)
class RestoreRequest:
    """A full restore of a snapshot into the n8n container ``container``: its SQLite file, or
    the PostgreSQL database at ``postgres_dsn`` it runs on. Schema and table prefix default to
    the snapshot's own; ``force`` restores while executions run; ``api_url`` is where n8n
    answers when the container publishes no port."""

    snapshot_dir: Path
    container: str
    postgres_dsn: str | None = None
    postgres_schema: str | None = None
    table_prefix: str | None = None
    force: bool = False
    api_url: str | None = None
    boot_timeout: float = 180.0


def restore_into_container(
    request: RestoreRequest, say: Callable[[str], None] = print
) -> RestoreResult:
    """Carry out ``request``; see the module doc. Only one n8n-backup works on a data folder
    (and a PostgreSQL database) at a time; the container must run n8n and no other running
    container may share its data (it would keep writing to the replaced files)."""
    _refuse_foreign_or_shared(request.container)
    source = inspect_n8n_container(request.container)
    with contextlib.ExitStack() as locks:
        locks.enter_context(exclusive(source.folder.path, "restore"))
        if request.postgres_dsn:
            from backup.n8n.postgres import PostgresTarget, database_lock

            target = PostgresTarget.from_dsn(request.postgres_dsn)
            locks.enter_context(database_lock(target, "restore"))
        return _restore_locked(request, source, say)


def _refuse_foreign_or_shared(container_name: str) -> None:
    with docker_client() as client:
        container = get_container(client, container_name)
        if not runs_n8n(container):
            raise InputError(
                f"container {container_name} does not run n8n: give the n8n container itself; "
                "nothing was changed"
            )
        if data_on_tmpfs(container):
            raise InputError(
                f"container {container_name} keeps n8n's data on a tmpfs mount, which is emptied "
                "when the container stops (and a restore must stop it): move the data to a "
                "volume first; nothing was changed"
            )
        sharing = containers_sharing_data(client, container)
    if sharing:
        raise InputError(
            f"container(s) {', '.join(sharing)} also mount the data of {container_name} and "
            f"would keep writing to it: stop them (docker stop {' '.join(sharing)}) and restore "
            "again; nothing was changed"
        )


def _refuse_another_database(
    container_name: str, source: ContainerSource, postgres: PostgresTarget
) -> None:
    """--postgres must name the database and user the container's n8n runs on: restoring into
    another one would leave n8n on its old data, or on a database it may not open."""
    for setting, given in (
        ("DB_POSTGRESDB_DATABASE", postgres.dbname),
        ("DB_POSTGRESDB_USER", postgres.user),
    ):
        configured = source.environment.get(setting)
        if configured is not None and configured != given:
            raise InputError(
                f"--postgres names {given!r}, but {container_name} runs n8n with {setting}="
                f"{configured!r}: give the DSN of n8n's own database and user; nothing was changed"
            )


def _restore_locked(
    request: RestoreRequest, source: ContainerSource, say: Callable[[str], None]
) -> RestoreResult:
    container_name = source.name
    snapshot_dir, api_url, boot_timeout = (
        request.snapshot_dir,
        request.api_url,
        request.boot_timeout,
    )
    postgres_dsn, table_prefix = request.postgres_dsn, request.table_prefix
    pending = read_journal(source.folder.path / ROLLBACK_DIR)
    if pending is not None:
        raise InputError(
            f"an interrupted restore of snapshot {pending.snapshot_id} into {pending.container} "
            f"is pending (step {pending.step}): run n8n-backup restore --resume --container "
            f"{container_name}{' --postgres DSN' if pending.kind == 'postgres' else ''} first; "
            "nothing was changed"
        )
    manifest = Manifest.load(snapshot_dir)
    if postgres_dsn:
        from backup.n8n.postgres import DEFAULT_SCHEMA, PostgresTarget
    postgres = (
        PostgresTarget.from_dsn(
            postgres_dsn,
            request.postgres_schema or manifest.database_schema or DEFAULT_SCHEMA,
            manifest.table_prefix if table_prefix is None else table_prefix,
        )
        if postgres_dsn
        else None
    )
    if source.database_kind != manifest.database_kind:
        raise InputError(
            f"container {container_name} runs n8n on {source.database_kind}, the snapshot holds "
            f"a {manifest.database_kind} database; nothing was changed"
        )
    if postgres is not None:
        _refuse_another_database(container_name, source, postgres)
    if (api_url or source.api_url) is None and source.running:
        # A stopped container's port is only known once it runs again (read after the start).
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
    _check_kind(snapshot_dir, manifest, postgres)
    manifest = trusted_snapshot(snapshot_dir, Secret(target_key))
    replacement = snapshot_dir / manifest.database_file
    slot: DatabaseSlot = (
        _postgres_slot(postgres, replacement, source.folder)
        if postgres
        else SqliteSlot(source.folder, replacement, manifest.table_prefix)
    )
    running = slot.tables().running_executions()
    if running and not request.force:
        raise InputError(
            f"{running} execution(s) are running in {container_name}: wait for them to finish, "
            "or pass --force to restore anyway; nothing was changed"
        )

    def record(step: str, started_at: str = "") -> None:
        folders_swapped = (folders.stamp, str(folders.binary_root))
        slot.record(container_name, manifest.snapshot_id, step, started_at, folders_swapped)

    folders = DataFolders(
        source.folder.path, rollback_stamp(), slot.rollback_dir, _binary_target(source)
    )
    for leftover in slot.clear_leftovers() + folders.clear_leftovers():
        say(f"restore: removed {leftover}, left by an interrupted restore")
    slot.check_space()
    with interrupts_as_keyboard_interrupt():
        try:
            rollback = slot.prepare()
            replaced = folders.prepare(snapshot_dir, manifest)
            pause_point(STAGED)
        except BaseException as exc:  # what was staged goes; n8n's data was not touched
            folders.discard()
            with contextlib.suppress(Exception):
                slot.discard()
            if isinstance(exc, KeyboardInterrupt):
                raise RestoreInterrupted(
                    f"interrupted before {container_name} was touched; nothing was changed"
                ) from None
            raise
    record(PREPARED)
    say(f"restore: previous database will be kept as {rollback}")
    if replaced:
        say(f"restore: {', '.join(replaced)} will be replaced, the previous ones kept")

    with docker_client() as client, interrupts_as_keyboard_interrupt():
        container = get_container(client, container_name)
        step = "stopping the container"
        try:
            record(STOPPING)
            say(f"restore: stopping {container_name}")
            container.stop(timeout=STOP_TIMEOUT_SECONDS)
            step = "replacing the database"
            pause_point(STOPPED)
            say("restore: replacing the database")
            slot.swap(on_replace=lambda: record(REPLACING))
            folders.swap()
            record(REPLACED)
            step = "starting the container"
            pause_point(SWAPPED)
            say(f"restore: starting {container_name}")
            started_at = time.time()
            container.start()
            container.reload()
            record(REPLACED, container.attrs["State"]["StartedAt"])  # resume tells restarts
            step = "waiting for n8n"
            pause_point(STARTED)
            url = _wait(container, api_url, boot_timeout)
            step = "checking workflows and credentials"
            say("restore: checking that the running n8n serves exactly the snapshot")
            workflows, credentials = _check_restored(
                container, slot.tables(), url, manifest, Secret(target_key)
            )
            stops = stops_since(client, container, started_at)
            if stops:  # someone ran docker stop or kill meanwhile: this n8n will not stay up
                raise N8nStartError(
                    f"{container_name} was stopped from outside during the restore ({stops[0]})"
                )
            slot.forget()
            folders.discard()
        except (Exception, KeyboardInterrupt) as exc:  # after the stop: put the old data back
            with interrupts_ignored():  # the rollback itself must not be cut short
                _roll_back(container, slot, api_url, boot_timeout, folders)
            back = f"the previous database was put back and {container_name} is running on it again"
            if isinstance(exc, KeyboardInterrupt):
                raise RestoreInterrupted(
                    f"restore interrupted while {step}; {back}; run the restore again when ready"
                ) from None
            raise RestoreError(
                f"restore failed while {step}: {exc}; {back}; fix the cause and restore again"
            ) from None
    with contextlib.suppress(BackupError, *_database_errors()):  # the restore stands anyway
        slot.keep_bounded()
        folders.keep_bounded(KEEP_ROLLBACKS)
        slot.hand_over()
    return RestoreResult(container_name, manifest.snapshot_id, workflows, credentials, rollback)


def resume_restore(
    container_name: str,
    *,
    postgres_dsn: str | None = None,
    api_url: str | None = None,
    boot_timeout: float = 180.0,
) -> str:
    """Finish what a killed restore left (SIGKILL, power loss): put the previous database back
    if it had been touched, start n8n, and say what was done. The restore can then run again.
    A restore into PostgreSQL needs ``postgres_dsn`` (the journal holds no password)."""
    source = inspect_n8n_container(container_name)
    with contextlib.ExitStack() as locks:
        locks.enter_context(exclusive(source.folder.path, "restore --resume"))
        journal = read_journal(source.folder.path / ROLLBACK_DIR)
        if journal is None:
            raise InputError(f"no interrupted restore of {container_name} to resume: nothing to do")
        if journal.container != container_name:
            raise InputError(
                f"the restore journal in {source.folder.path / ROLLBACK_DIR} is for container "
                f"{journal.container}, not {container_name}: check it by hand; nothing was changed"
            )
        slot = _slot_to_resume(source, journal, postgres_dsn)
        folders = _folders_to_resume(source, journal, slot)
        if journal.kind == "postgres" and postgres_dsn:
            from backup.n8n.postgres import PostgresTarget, database_lock

            target = PostgresTarget.from_dsn(postgres_dsn)
            locks.enter_context(database_lock(target, "restore --resume"))
        touched = slot.swapped
        try:
            with docker_client() as client, interrupts_ignored():
                container = get_container(client, container_name)
                if touched:
                    _refuse_if_started_since(container, journal, slot)
                    container.stop(timeout=STOP_TIMEOUT_SECONDS)
                    slot.swap_back()
                if folders is not None:
                    folders.undo_interrupted()
                slot.discard()
                container.reload()
                if container.status != "running":
                    container.start()
                _wait(container, api_url, boot_timeout)
                slot.forget()
                slot.hand_over()
        except (BackupError, DockerException, OSError, *_database_errors()) as exc:
            raise RestoreError(
                f"resume of the restore into {container_name} failed: {exc}; the journal is "
                "kept: fix the cause and run restore --resume again"
            ) from None
    undone = (
        f"the previous database was put back from {slot.rollback()}"
        if touched
        else "its data had not been changed"
    )
    return (
        f"resumed the interrupted restore of snapshot {journal.snapshot_id} into "
        f"{container_name}: {undone}; {container_name} is running on its previous data; "
        "run the restore again when ready"
    )


def _refuse_if_started_since(
    container: Container, journal: RestoreJournal, slot: DatabaseSlot
) -> None:
    """n8n started on the restored data by someone else (an operator, a restart policy) may
    have written to it since: putting the previous database back would lose that."""
    container.reload()
    started = container.attrs["State"]["StartedAt"]
    ours = journal.started_at
    if (ours and started != ours) or (not ours and container.status == "running"):
        raise InputError(
            f"{container.name} was started again after the interrupted restore and may hold "
            f"new data: resume would replace it with the previous database ({slot.rollback()}); "
            "check which data you want and put it in place by hand; nothing was changed"
        )


def _folders_to_resume(
    source: ContainerSource, journal: RestoreJournal, slot: DatabaseSlot
) -> DataFolders | None:
    """The node and binary folders the killed restore swapped, as its journal names them
    (only a stamp of ours and one of this container's binary data roots are accepted)."""
    if not journal.folders:
        return None
    roots = [str(root) for root in source.binary_roots]
    roots.append(str(source.folder.path / RESTORED_BINARY_FOLDER))
    if not re.fullmatch(STAMP, journal.folders) or journal.binary_root not in roots:
        raise SnapshotError(
            f"the restore journal in {slot.rollback_dir} names folders that are not this "
            "container's: check it by hand; nothing was changed"
        )
    return DataFolders(
        source.folder.path, journal.folders, slot.rollback_dir, Path(journal.binary_root)
    )


def _slot_to_resume(
    source: ContainerSource, journal: RestoreJournal, postgres_dsn: str | None
) -> DatabaseSlot:
    if journal.kind == "sqlite":
        return SqliteSlot.from_journal(source.folder, journal)
    if not postgres_dsn:
        raise InputError(
            f"the interrupted restore into {source.name} was into PostgreSQL database "
            f"{journal.database!r}: give --postgres with the DSN of it (password in PGPASSWORD); "
            "nothing was changed"
        )
    from backup.n8n.postgres import PostgresTarget
    from backup.restore.postgres_slot import PostgresSlot

    return PostgresSlot.from_journal(PostgresTarget.from_dsn(postgres_dsn), source.folder, journal)


def _wait(container: Container, api_url: str | None, timeout: float) -> str:
    """Wait for n8n after a start; return its URL (a published port can change on restart)."""
    container.reload()
    url = api_url or inspect_n8n_container(str(container.name)).api_url
    if url is None:
        raise N8nStartError(
            f"container {container.name} publishes no port for 5678 (give --api-url) or is "
            "not running"
        )
    wait_until_ready(BootingContainer(container, url), timeout)
    return url


def _check_restored(
    container: Container, database: N8nTables, url: str, manifest: Manifest, key: Secret
) -> tuple[int, int]:
    """Exactly the snapshot: anything missing, changed or more means the running data is not
    what was restored."""
    workflows, problems = workflows_served(url, database, manifest)
    credentials, more = credentials_decrypted(ContainerCli(container), key, manifest)
    problems += more
    if problems:
        raise N8nCheckError(f"{len(problems)} problem(s), first: {problems[0]}")
    return workflows, credentials


def _binary_target(source: ContainerSource) -> Path:
    """Where the container's n8n keeps binary data: the first of its roots that exists."""
    existing = [root for root in source.binary_roots if root.is_dir()]
    return existing[0] if existing else source.folder.path / RESTORED_BINARY_FOLDER


def _roll_back(
    container: Container,
    slot: DatabaseSlot,
    api_url: str | None,
    timeout: float,
    folders: DataFolders | None = None,
) -> None:
    """Put the previous database (and node and binary folders) back (only if they were
    replaced), start n8n on it, drop what was staged, and close the journal."""
    try:
        container.stop(timeout=STOP_TIMEOUT_SECONDS)
        slot.swap_back()
        if folders is not None:
            folders.swap_back()
            folders.discard()
        container.start()
        _wait(container, api_url, timeout)
    except (BackupError, DockerException, OSError, *_database_errors()) as exc:
        raise RestoreError(
            f"restore failed and so did putting the previous database back ({exc}); it is kept "
            f"as {slot.rollback()}: fix the cause, then run n8n-backup restore --resume "
            f"--container {container.name}{' --postgres DSN' if slot.kind == 'postgres' else ''}"
        ) from None
    with contextlib.suppress(*_database_errors()):  # n8n runs on its data; staging is spare
        slot.discard()
    slot.forget()
    with contextlib.suppress(BackupError, OSError):
        slot.hand_over()


def _postgres_slot(target: PostgresTarget, dump: Path, folder: N8nFolder) -> DatabaseSlot:
    from backup.restore.postgres_slot import PostgresSlot

    return PostgresSlot(target, dump, folder)
