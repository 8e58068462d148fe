"""Fixtures of the verify suite: case -> manifest -> stored key -> restored, booted n8n.

Everything that boots is session-scoped and parametrized by snapshot, so each snapshot boots
once and its instance is stopped before the next snapshot's boots.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pytest
from pytest_metadata.plugin import metadata_key

from backup.check import database_file_problems
from backup.digests import workflow_digest
from backup.errors import BackupError, N8nCheckError, N8nStartError, SnapshotError
from backup.manifest import Manifest, authenticate
from backup.n8n import npm
from backup.n8n.instances.base import OUTBOUND_OFF, OUTBOUND_SINK, N8nInstance, outbound_env
from backup.n8n.instances.process import N8nProcess
from backup.n8n.node_types import (
    TYPES_PATH,
    LoadedTypes,
    NodeTypeUse,
    loaded_node_types,
    used_node_types,
)
from backup.n8n.session import EditorSession, instance_jwt_secret
from backup.n8n.sqlite import N8nDatabase
from backup.n8n.tables import N8nTables, WorkflowRow
from backup.restore.checks import (
    active_before_start,
    inert_problems,
    n8n_credential_digests,
    workflows_served,
)
from backup.restore.credential_tests import credential_secrets as decrypt_for_tests
from backup.secret import Secret
from verify.cases import (
    FILES_KEY,
    NEXT_FOLDER_KEY,
    SUMMARIES_KEY,
    DowngradeError,
    SnapshotCase,
    StoredKey,
)
from verify.report import SnapshotSummary, add_environment_fact
from verify.restore import RestoredFolder, restore_to_temp
from verify.upgrade import upgrade_changes

if TYPE_CHECKING:  # Docker and PostgreSQL are extras: imported where a snapshot needs them
    from backup.n8n.instances.docker import IsolatedNetwork
    from backup.n8n.postgres import PostgresTarget

TYPES_ATTEMPTS = 3
KEY_HINTS = ("encryption key", "encryptionkey", "deployment key")


@dataclass
class RestoredInstance:
    """A fresh n8n running on a restored copy of a snapshot."""

    instance: N8nInstance
    folder: RestoredFolder
    database: N8nTables  # the restored database n8n runs on
    version: str
    migrations_before: list[str]  # as restored, before n8n migrated it
    started_at: float  # when the n8n server was launched (time.monotonic)
    # What n8n must serve, by workflow id: the manifest's digests, or after an upgrade the
    # digests of the migrated rows (the migrations' own changes are reported, not failed).
    expected_digests: dict[str, str]
    # n8n's own decryption of every credential, running since the server was launched.
    credential_digests: Future[dict[str, str]]
    # The workflows n8n serves (count, problems), read through its API since it became ready.
    served_workflows: Future[tuple[int, list[str]]]
    # The node types n8n loaded, as its editor lists them, read since it became ready.
    node_types: Future[LoadedTypes]
    not_inert_at_readiness: list[str]  # the structural proof, taken as soon as n8n was ready
    # The node types the migrated workflows use, after an upgrade whose migrations ran (else
    # the copy's workflows are what n8n runs).
    migrated_node_types: NodeTypeUse | None


@pytest.fixture(scope="session")
def case(request: pytest.FixtureRequest) -> Iterator[SnapshotCase]:
    """The snapshot under test (parametrized by the plugin); from a repository, its files are
    fetched for its group of tests and removed after it."""
    value: SnapshotCase = request.param
    files = request.config.stash.get(FILES_KEY, None)
    if files is None:
        yield value
        return
    config = request.config
    with contextlib.ExitStack() as holding:
        try:
            holding.enter_context(
                files.held(
                    value.folder, lambda: config.stash.get(NEXT_FOLDER_KEY, None) == value.folder
                )
            )
        except (BackupError, OSError) as exc:  # OSError: the disk is full, say
            why = f"the snapshot's files could not be fetched: {exc}"
            config.stash[SUMMARIES_KEY][value.case_id].unfetched = why
            pytest.fail(why, pytrace=False)
        yield value


@pytest.fixture(scope="session")
def summary(case: SnapshotCase, request: pytest.FixtureRequest) -> SnapshotSummary:
    """The report's summary row for this snapshot."""
    return request.config.stash[SUMMARIES_KEY][case.case_id]


@pytest.fixture(scope="session")
def claimed_manifest(case: SnapshotCase, summary: SnapshotSummary) -> Manifest:
    """The manifest as the folder claims it: well-formed, not yet authenticated."""
    try:
        loaded = Manifest.load(case.folder)
    except SnapshotError as exc:
        pytest.fail(str(exc), pytrace=False)
    summary.fill_from_manifest(loaded)
    try:
        summary.target_version = case.target_version(loaded)
    except DowngradeError as exc:
        pytest.fail(str(exc), pytrace=False)  # before anything boots
    return loaded


@pytest.fixture(scope="session")
def stored_key(case: SnapshotCase, claimed_manifest: Manifest) -> StoredKey:
    """The key store's entry for the snapshot (a problem is reported by the checks)."""
    return case.stored_key(claimed_manifest.key_fingerprint)


@dataclass(frozen=True)
class Authentication:
    """The manifest once its MAC holds under the stored key, or why it does not."""

    manifest: Manifest | None
    problem: str | None


@pytest.fixture(scope="session")
def authentication(
    case: SnapshotCase, stored_key: StoredKey, summary: SnapshotSummary
) -> Authentication:
    """Check the manifest's MAC with the key store's key, before anything in it is believed."""
    result = Authentication(None, stored_key.problem)
    if stored_key.value is not None:
        try:
            result = Authentication(authenticate(case.folder, stored_key.value.reveal()), None)
        except SnapshotError as exc:
            result = Authentication(None, str(exc))
    summary.authenticity = (
        f"authenticated (HMAC-SHA256 under key {stored_key.fingerprint})"
        if result.manifest is not None
        else f"NOT authenticated: {result.problem}"
    )
    return result


@pytest.fixture(scope="session")
def manifest(authentication: Authentication) -> Manifest:
    """The authenticated manifest; every check that relies on it fails without one."""
    if authentication.manifest is None:
        pytest.fail(
            f"not checked: the manifest is not authentic ({authentication.problem})", pytrace=False
        )
    return authentication.manifest


@pytest.fixture(scope="session")
def database_file_check(case: SnapshotCase, manifest: Manifest) -> list[str]:
    """Problems of the database file alone (checked once: it is the largest file)."""
    return database_file_problems(case.folder, manifest)


@pytest.fixture(scope="session")
def postgres_container(
    case: SnapshotCase, manifest: Manifest, docker_network: IsolatedNetwork
) -> Iterator[PostgresTarget]:
    """A PostgreSQL server in a container on the internal network (docker runtime), of the
    snapshot's source major by default; removed at the end."""
    from backup.n8n.instances.docker import PostgresContainer

    image = case.postgres_image_for(manifest)
    with PostgresContainer(image, docker_network, case.boot_timeout) as server:
        yield server


def _major_mismatch(manifest: Manifest, major: int) -> str:
    """A warning (also in the report) when the snapshot's server major differs from this one's:
    restore into the same major to rehearse exactly what production runs."""
    source = manifest.database_server_version
    if source is None or int(source.split(".")[0]) == major:
        return ""
    said = (
        f"PostgreSQL {source.split('.')[0]} snapshot on a PostgreSQL {major} server: "
        "majors differ; verify on the source's major to rehearse what production runs"
    )
    warnings.warn(said, stacklevel=2)
    return f" ({said})"


def _postgres_server(
    case: SnapshotCase, manifest: Manifest, request: pytest.FixtureRequest
) -> tuple[PostgresTarget, str]:
    """Where PostgreSQL snapshots are restored: --postgres, or on the docker runtime a
    PostgreSQL container (n8n's container could not reach a server outside its network)."""
    if case.runtime == "docker" and case.postgres_dsn is None:
        from backup.n8n.docker_engine import engine_host, remote_engine

        if (remote := remote_engine()) is not None:
            pytest.fail(
                "this is a PostgreSQL snapshot: on a remote Docker engine "
                f"({engine_host(remote)}) only SQLite snapshots are verified so far; unset "
                "DOCKER_HOST to use this machine's engine, or use --runtime process --postgres DSN",
                pytrace=False,
            )
        server: PostgresTarget = request.getfixturevalue("postgres_container")
        image = case.postgres_image_for(manifest)
        return server, f"PostgreSQL container ({image}) on the internal network"
    if case.postgres_dsn is None:
        pytest.fail(
            "this is a PostgreSQL snapshot: give --postgres DSN of a server where verify may "
            "create and drop a throwaway database (or use --runtime docker)",
            pytrace=False,
        )
    from backup.n8n.postgres import PostgresTarget

    server = PostgresTarget.from_dsn(case.postgres_dsn)
    return server, f"PostgreSQL {server.host}:{server.port} (--postgres)"


@pytest.fixture(scope="session")
def snapshot_database(
    case: SnapshotCase,
    manifest: Manifest,
    database_file_check: list[str],
    summary: SnapshotSummary,
    request: pytest.FixtureRequest,
) -> Iterator[N8nTables]:
    """The snapshot's database: the SQLite copy itself (read-only), or for PostgreSQL the dump
    restored into a throwaway database owned by a throwaway role, both dropped afterwards (also
    on failure). The restored instance then runs on that same database, as that role."""
    if database_file_check:
        pytest.fail(f"not read, the database copy is damaged: {database_file_check[0]}", False)
    if manifest.database_kind == "sqlite":
        yield N8nDatabase(case.folder / manifest.database_file, manifest.table_prefix)
        return
    from backup.n8n.postgres import DEFAULT_SCHEMA, PostgresTables, restore_dump, server_major
    from backup.n8n.postgres_throwaway import create_throwaway_role, drop_throwaway

    admin, where = _postgres_server(case, manifest, request)
    server = replace(
        admin, schema=manifest.database_schema or DEFAULT_SCHEMA, table_prefix=manifest.table_prefix
    )
    role: PostgresTarget | None = None
    try:
        try:
            role = create_throwaway_role(server)
            dbname = role.user
            summary.database = f"{where}, database and role {dbname}"
            summary.database += _major_mismatch(manifest, server_major(server))
            target = restore_dump(server, case.folder / manifest.database_file, dbname, role)
        except BackupError as exc:
            pytest.fail(f"the dump does not restore: {exc}", pytrace=False)
        tables = PostgresTables(target)
        _environment_fact(request, "PostgreSQL (restore target)", tables.server_version())
        yield tables
    finally:
        if role is not None:
            with contextlib.suppress(BackupError):
                drop_throwaway(server, role.user)


@dataclass(frozen=True)
class CopiedWorkflows:
    """The workflows of the snapshot's database, read once: their digests by id, and the node
    types they use."""

    digests: dict[str, str]
    node_types: NodeTypeUse


@pytest.fixture(scope="session")
def copied_workflows(snapshot_database: N8nTables) -> CopiedWorkflows:
    """Read the snapshot database's workflows once, one row at a time, for the counts and the
    node types (a workflow's nodes are dropped once used)."""
    copied = CopiedWorkflows({}, NodeTypeUse())
    for row in snapshot_database.iter_workflows():
        copied.digests[row.id] = workflow_digest(row.nodes, row.connections)
        copied.node_types.add(row)
    return copied


@pytest.fixture(scope="session")
def docker_network() -> Iterator[IsolatedNetwork]:
    """One internal Docker network for the session's containers; swept and removed at the end."""
    from backup.n8n.instances.docker import IsolatedNetwork

    network = IsolatedNetwork()
    yield network
    network.close()


def _environment_fact(request: pytest.FixtureRequest, name: str, value: str | None) -> None:
    """A version learnt while verifying, for the report's Environment table (pytest-html
    renders that table from pytest-metadata's stash at the end of the run)."""
    environment = request.config.stash.get(metadata_key, None)
    if environment is not None:
        add_environment_fact(environment, name, value)


def _new_instance(
    case: SnapshotCase,
    version: str,
    folder: RestoredFolder,
    key: Secret,
    request: pytest.FixtureRequest,
    summary: SnapshotSummary,
    extra_env: dict[str, str],
    database: N8nTables,
) -> tuple[N8nInstance, N8nTables]:
    """The instance to boot, and the restored tables as that instance's n8n will see them."""
    _environment_fact(request, "n8n (restore target)", version)
    if case.runtime == "docker":
        from backup.n8n.docker_engine import engine_host, over_ssh
        from backup.n8n.instances.docker import N8nContainer, engine_facts

        image = case.image(version)
        engine, image_id = engine_facts(image)
        _environment_fact(request, "Docker engine", engine)
        network: IsolatedNetwork = request.getfixturevalue("docker_network")
        try:
            container = N8nContainer(
                image,
                folder.user_folder,
                key.reveal(),
                network,
                extra_env,
                host_network=case.test_credentials,
            )
        except BackupError as exc:
            pytest.fail(f"not booted: {exc}", pytrace=False)
        where = "internal network"
        if container.engine_url is not None:
            where += (
                f", remote engine {engine_host(container.engine_url)}: data shipped into a "
                "volume, n8n reached through a relay container"
                + (" and an SSH tunnel" if over_ssh(container.engine_url) else "")
            )
            if isinstance(database, N8nDatabase):  # n8n's copy lives in the remote volume
                database = container.live_database(database.prefix)
        summary.runtime = (
            f"docker ({image}, {where}), image {image_id or '?'}, Docker engine {engine or '?'}"
        )
        if case.test_credentials:
            summary.isolation = "host network (--test-credentials): the container can reach out"
        else:
            summary.isolation = "internal Docker network: no route out of the container"
        return container, database
    try:
        launcher = npm.install(version, log=False)
    except BackupError as exc:
        pytest.fail(f"cannot install n8n {version}: {exc}", pytrace=False)
    summary.runtime = f"process (n8n {version} from npm, Node.js {npm.NODE_VERSION})"
    _environment_fact(request, "Node.js (process runtime)", npm.NODE_VERSION)
    summary.isolation = (
        "local process on 127.0.0.1; n8n's outbound features off ("
        + ", ".join(sorted(OUTBOUND_OFF))
        + f"); configurable endpoints and the HTTP(S) proxy point at {OUTBOUND_SINK} (closed)"
        + ("" if version.startswith("1.") else "; the MCP registry module is disabled")
    )
    return N8nProcess(launcher, folder.user_folder, key.reveal(), extra_env=extra_env), database


@dataclass(frozen=True)
class _Prepared:
    """What the boot of a restored copy needs, made ready in the main thread (fixtures)."""

    instance: N8nInstance
    database: N8nTables  # the restored tables, as the instance's n8n sees them
    version: str
    upgrade: bool
    migrations_before: list[str]
    source_rows: list[WorkflowRow]  # before the upgrade's migrations (none without one)


@pytest.fixture(scope="session")
def launch(
    case: SnapshotCase,
    manifest: Manifest,
    database_file_check: list[str],
    stored_key: StoredKey,
    summary: SnapshotSummary,
    request: pytest.FixtureRequest,
) -> Iterator[Future[RestoredInstance]]:
    """A fresh n8n of the target version booting on a restored, inert copy with the stored key,
    in the background: requested before the checks of the snapshot's copy so that they run
    while n8n boots. A failure of the boot is kept for ``restored``, not raised here.

    Only an authenticated snapshot whose database file is whole is booted.
    """
    background = ThreadPoolExecutor(4, thread_name_prefix="n8n-restored")
    folder: RestoredFolder | None = None
    try:
        try:
            if database_file_check:
                damage = database_file_check[0]
                pytest.fail(f"not booted, the database copy is damaged: {damage}", pytrace=False)
            assert stored_key.value is not None  # the manifest is authentic: the key is there
            prepared, folder = _prepare(case, manifest, stored_key.value, summary, request)
        except (Exception, pytest.fail.Exception) as exc:  # test_boot's failure, or error
            yield _failed(exc)
            return
        case.attach(prepared.instance)
        yield background.submit(
            _boot, prepared, case, manifest, folder, stored_key.value, summary, background
        )
    finally:
        case.detach()  # stopping n8n also ends its boot and an export running in its container
        background.shutdown(wait=True, cancel_futures=True)  # before its folder goes
        if folder is not None:
            folder.cleanup()


@pytest.fixture(scope="session")
def copy_checked_while_booting(manifest: Manifest, request: pytest.FixtureRequest) -> None:
    """n8n starts booting before the checks of a SQLite snapshot's copy, which read the
    snapshot's own file. A PostgreSQL snapshot's checks read the very database n8n will run on,
    so there n8n boots only after them."""
    if manifest.database_kind == "sqlite":
        request.getfixturevalue("launch")


@pytest.fixture(scope="session")
def restored(launch: Future[RestoredInstance]) -> RestoredInstance:
    """The restored n8n, once it is ready (its boot's failure, if any, fails here)."""
    return launch.result()


def _failed(exc: BaseException) -> Future[RestoredInstance]:
    future: Future[RestoredInstance] = Future()
    future.set_exception(exc)
    return future


def _prepare(
    case: SnapshotCase,
    manifest: Manifest,
    key: Secret,
    summary: SnapshotSummary,
    request: pytest.FixtureRequest,
) -> tuple[_Prepared, RestoredFolder]:
    """Restore the copy, make it inert and create (not start) the instance that will run it."""
    version = case.target_version(manifest)
    database: N8nTables = request.getfixturevalue("snapshot_database")
    # Made inert before the boot; n8n then runs on exactly the tables that were made inert.
    extra_env = {"DB_TABLE_PREFIX": manifest.table_prefix}
    try:
        folder = restore_to_temp(case.folder, manifest, key)
    except BackupError as exc:
        pytest.fail(f"not booted: {exc}", pytrace=False)
    try:
        try:
            if isinstance(database, N8nDatabase):
                database = N8nDatabase(folder.database, manifest.table_prefix)
            else:  # PostgreSQL: the throwaway database itself
                from backup.n8n.postgres import PostgresTables, n8n_database_env

                assert isinstance(database, PostgresTables)
                database.deactivate()
                extra_env.update(n8n_database_env(database.target))
        except BackupError as exc:
            pytest.fail(f"not booted: {exc}", pytrace=False)
        extra_env.update(outbound_env(version))
        reach_note = ""
        if case.test_credentials:  # n8n may reach the credentials' own hosts, and only those
            reached: CredentialSecrets = request.getfixturevalue("credential_secrets")
            extra_env["NO_PROXY"] = ",".join([extra_env["NO_PROXY"], *sorted(reached.hosts)])
            reach_note = (
                "; --test-credentials: HTTP(S) goes to a closed proxy except to "
                + (", ".join(sorted(reached.hosts)) or "no host named in a credential")
                + "; other protocols (databases, mail, SSH) reach their servers directly"
            )
        migrations_before = database.migrations()
        # Only another version has migrations to run; n8n of the snapshot's own version ran all
        # of its migrations before the snapshot was taken.
        upgrade = version != manifest.source_n8n_version
        source_rows = database.workflows() if upgrade else []
        instance, database = _new_instance(
            case, version, folder, key, request, summary, extra_env, database
        )
    except BaseException:  # a failure too: nothing of the restored copy stays behind
        folder.cleanup()
        raise
    summary.isolation += reach_note
    prepared = _Prepared(instance, database, version, upgrade, migrations_before, source_rows)
    return prepared, folder


def _boot(
    prepared: _Prepared,
    case: SnapshotCase,
    manifest: Manifest,
    folder: RestoredFolder,
    key: Secret,
    summary: SnapshotSummary,
    background: ThreadPoolExecutor,
) -> RestoredInstance:
    """Boot the prepared instance (in a background thread; failures are pytest failures), and
    start the reads that run beside the checks."""
    instance, database, version = prepared.instance, prepared.database, prepared.version
    activated: list[str] = []
    try:
        if prepared.upgrade:
            activated = _keep_inert_through_migrations(instance, database, manifest)
    except (N8nCheckError, BackupError) as exc:
        pytest.fail(f"not booted: {exc}", pytrace=False)
    expected = {w.id: w.digest for w in manifest.workflows}
    migrated_node_types = None
    if database.migrations() != prepared.migrations_before:  # an upgrade: say what it changed
        migrated_rows = database.workflows()
        summary.upgrade_changes = upgrade_changes(prepared.source_rows, migrated_rows, activated)
        expected = {row.id: workflow_digest(row.nodes, row.connections) for row in migrated_rows}
        migrated_node_types = used_node_types(migrated_rows)
    if isinstance(database, N8nDatabase) and not version.startswith("1."):
        # What n8n 2.x does when it opens the file, done first: the export and the server
        # then open it together without racing to switch the journal mode.
        database.use_wal()
    # n8n's credential export is a second n8n process: it boots beside the server (the
    # database is at the target version's schema by now), not after it.
    credential_digests = background.submit(
        n8n_credential_digests, instance, key, manifest.key_fingerprint
    )
    started_at = time.monotonic()
    try:
        instance.start(timeout=case.boot_timeout)
    except N8nStartError as exc:
        pytest.fail(_start_failure(version, manifest, exc, case), pytrace=False)
    summary.boot_seconds = instance.ready_seconds
    summary.migrations_run = database.migrations()[len(prepared.migrations_before) :]
    if summary.migrations_run and not prepared.upgrade:
        pytest.fail(
            f"n8n {version} ran migrations on a snapshot of that same version "
            f"({', '.join(summary.migrations_run[:3])}): the database is not what n8n "
            f"{version} leaves behind",
            pytrace=False,
        )
    served_workflows = background.submit(
        workflows_served, instance.base_url, database, manifest, expected
    )
    node_types = background.submit(_node_types_loaded, instance.base_url, database, key)
    try:
        not_inert = inert_problems(instance.base_url, database, manifest)
    except BackupError as exc:
        not_inert = [str(exc)]
    return RestoredInstance(
        instance,
        folder,
        database,
        version,
        prepared.migrations_before,
        started_at,
        expected,
        credential_digests,
        served_workflows,
        node_types,
        not_inert,
        migrated_node_types,
    )


@pytest.fixture(scope="session")
def editor(restored: RestoredInstance, stored_key: StoredKey) -> Iterator[EditorSession]:
    """The restored instance's owner, signed in as n8n's editor is."""
    assert stored_key.value is not None
    try:
        session = _owner_session(restored.instance.base_url, restored.database, stored_key.value)
    except N8nCheckError as exc:
        pytest.fail(str(exc), pytrace=False)
    except BackupError as exc:
        pytest.fail(f"cannot sign in to the restored n8n: {exc}", pytrace=False)
    with session:
        yield session


def _owner_session(base_url: str, database: N8nTables, key: Secret) -> EditorSession:
    """A session of the restored instance's owner, as n8n's editor signs in (not yet opened).
    Raises N8nCheckError when no owner could sign in, BackupError when the signing secret
    cannot be derived."""
    owner = database.owner()
    if owner is None:
        raise N8nCheckError("the restored database has no owner who could sign in")
    return EditorSession(base_url, owner, instance_jwt_secret(database, key))


@dataclass(frozen=True)
class CredentialSecrets:
    """For the opt-in credential tests: the hosts the credentials point at, and per credential
    id the secret values to hide from n8n's messages (never shown in any repr)."""

    hosts: frozenset[str]
    hidden: dict[str, list[Secret]] = field(repr=False)


@pytest.fixture(scope="session")
def credential_secrets(snapshot_database: N8nTables, stored_key: StoredKey) -> CredentialSecrets:
    """Decrypt the copy's credentials once, in Python, for their hosts and secret values."""
    assert stored_key.value is not None
    hosts, hidden = decrypt_for_tests(
        snapshot_database.credentials(), stored_key.value, snapshot_database.data_keys()
    )
    return CredentialSecrets(frozenset(hosts), hidden)


@pytest.fixture(scope="session")
def loaded_types(restored: RestoredInstance, editor: EditorSession) -> LoadedTypes:
    """The node types the restored n8n loaded, as its editor lists them (read since n8n was
    ready; after the editor's sign-in, whose failure says why the owner cannot sign in)."""
    try:
        return restored.node_types.result()
    except (N8nCheckError, BackupError) as exc:
        pytest.fail(f"cannot list the node types n8n loaded: {exc}", pytrace=False)


def _node_types_loaded(base_url: str, database: N8nTables, key: Secret) -> LoadedTypes:
    """The node types n8n lists to its editor, signed in as the owner. n8n rewrites the list
    while it loads community packages, so a cut answer is read again."""
    with _owner_session(base_url, database, key) as session:
        for attempt in range(TYPES_ATTEMPTS):
            try:
                return loaded_node_types(session.json("GET", TYPES_PATH))
            except N8nCheckError as exc:
                if attempt == TYPES_ATTEMPTS - 1 or "did not answer JSON" not in str(exc):
                    raise
                time.sleep(1)
    raise AssertionError("unreachable")


def _keep_inert_through_migrations(
    instance: N8nInstance, database: N8nTables, manifest: Manifest
) -> list[str]:
    """Ask n8n itself, before it starts, which workflows it would activate: its CLI runs the
    target version's migrations first (which can publish workflows), without any trigger.
    Deactivate again what the migrations activated (returned); refuse to start if anything
    stays active."""
    activated = active_before_start(instance)
    if not activated:
        return []
    database.deactivate()
    hand_over = getattr(instance, "hand_over_files", None)  # the docker runtime only
    if hand_over is not None:
        hand_over()  # what we rewrote goes back to the container's user
    still = active_before_start(instance)
    if still:
        raise N8nCheckError(
            f"n8n would activate {len(still)} workflow(s) at start even after deactivation: "
            f"{still[:10]}"
        )
    return activated


def _start_failure(version: str, manifest: Manifest, exc: N8nStartError, case: SnapshotCase) -> str:
    said = case.instance_log()
    if any(hint in said.lower() for hint in KEY_HINTS):
        return (
            f"n8n {version} refused to start on the restored data with encryption key "
            f"{manifest.key_fingerprint} from the key store: the key does not match this "
            f"snapshot; n8n said: "
            f"{_key_line(said)}"
        )
    return f"n8n {version} did not start on the restored data: {exc}"


def _key_line(log: str) -> str:
    for line in reversed(log.splitlines()):
        if any(hint in line.lower() for hint in KEY_HINTS):
            return line.strip()[:300]
    return "(no line about the key)"
