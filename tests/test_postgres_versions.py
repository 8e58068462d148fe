"""PostgreSQL across server majors: n8n on Debian's PostgreSQL 15, dumped by PostgreSQL 18's
pg_dump, verifies and restores on that same older server and on a newer one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from backup.errors import InputError, PgDumpError
from backup.manifest import Manifest
from backup.n8n.api import N8nApi
from backup.n8n.instances.process import N8nProcess
from backup.n8n.postgres import (
    PostgresTarget,
    _restore_to_older_server,
    database_lock,
    drop_database,
    n8n_database_env,
    restore_dump,
    server_major,
)
from tests.browser import environment_table, rendered_dom
from tests.cli_support import run_snapshot_cli
from tests.docker_support import PROCESS_ARGS
from tests.n8n_support import BOOT_TIMEOUT, SourceInstance, seed
from tests.postgres_support import DEBIAN_POSTGRES_BIN, PostgresServer
from tests.verify_runner import VERIFY_CHECKS, run_verify
from verify.bootstrap import create_owner_and_api_key


@pytest.fixture(scope="module")
def postgres_15() -> Iterator[PostgresServer]:
    server = PostgresServer(DEBIAN_POSTGRES_BIN).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres_18() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def snapshot_on_15(
    postgres_15: PostgresServer, launcher: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path]]:
    """n8n 2.40.7 on PostgreSQL 15 (schema public), seeded, and a snapshot of it."""
    with psycopg.connect(postgres_15.dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE n8n")
    env = n8n_database_env(PostgresTarget.from_dsn(postgres_15.dsn("n8n")))
    base = tmp_path_factory.mktemp("pg15")
    process = N8nProcess(launcher, base / "n8n", None, extra_env=env)
    try:
        process.start(timeout=BOOT_TIMEOUT)
        api_key = create_owner_and_api_key(process.base_url)
        source = SourceInstance(process, api_key, N8nApi(process.base_url, api_key))
        seed(source.api, corpus=True, generated=3)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PGPASSWORD", postgres_15.password)
            path = run_snapshot_cli(
                api_key,
                base / "snapshots",
                base / "keys",
                "--postgres",
                f"postgresql://postgres@127.0.0.1:{postgres_15.port}/n8n",
                "--n8n-folder",
                str(process.user_folder),
                "--api-url",
                process.base_url,
            )
        source.api.close()
        yield path, base / "keys"
    finally:
        process.close()


def test_the_manifest_records_the_source_server(snapshot_on_15: tuple[Path, Path]) -> None:
    version = Manifest.load(snapshot_on_15[0]).database_server_version
    assert version is not None and version.startswith("15.")


@pytest.mark.parametrize("server_name", ["postgres_15", "postgres_18"])
def test_verify_on_the_same_and_a_newer_major(
    pytester: pytest.Pytester,
    snapshot_on_15: tuple[Path, Path],
    server_name: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server: PostgresServer = request.getfixturevalue(server_name)
    path, keys = snapshot_on_15
    monkeypatch.setenv("PGPASSWORD", server.password)
    dsn = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    run = run_verify(pytester, path, keys, *PROCESS_ARGS, "--postgres", dsn)
    assert run.failures == {}
    run.result.assert_outcomes(passed=VERIFY_CHECKS)
    text = run.report.read_text(encoding="utf-8")
    majors_differ = "PostgreSQL 15 snapshot on a PostgreSQL 18 server"
    assert (majors_differ in text) == (server_name == "postgres_18")
    # The server's version is in the report's Environment table, as the browser shows it.
    major = "18" if server_name == "postgres_18" else "15"
    restore_target = environment_table(rendered_dom(run.report))["PostgreSQL (restore target)"]
    assert restore_target.startswith(f"{major}."), restore_target


def test_restore_into_the_older_server_keeps_real_errors(
    snapshot_on_15: tuple[Path, Path], postgres_15: PostgresServer
) -> None:
    """The dump of PostgreSQL 18's tools restores on 15 (only the settings 15 does not know are
    left out); a genuine error still stops the restore."""
    path, _ = snapshot_on_15
    manifest = Manifest.load(path)
    server = PostgresTarget.from_dsn(postgres_15.dsn())
    assert server_major(server) == 15
    restored = restore_dump(server, path / "database.dump", "restored_on_15")
    try:
        with restored.connect() as conn:
            row = conn.execute('SELECT COUNT(*) FROM "public"."workflow_entity"').fetchone()
        assert row is not None and row[0] == manifest.counts.workflows
        # The same SQL again into the database that now has every table: a genuine error,
        # which stops the restore with the server's own words.
        with pytest.raises(PgDumpError, match=r"psql of .* failed: .*already exists"):
            _restore_to_older_server(path / "database.dump", ["--no-owner"], restored)
    finally:
        drop_database(server, "restored_on_15")


def test_one_restore_at_a_time_per_database(postgres_18: PostgresServer) -> None:
    target = PostgresTarget.from_dsn(postgres_18.dsn("n8n"))
    with database_lock(target, "restore"):
        refused = pytest.raises(InputError, match="another n8n-backup is working on database")
        with refused, database_lock(target, "restore"):
            pass
        other = PostgresTarget.from_dsn(postgres_18.dsn("another_n8n"))
        with database_lock(other, "restore"):
            pass  # another database is another lock
    with database_lock(target, "restore"):
        pass  # released when the first holder ended
