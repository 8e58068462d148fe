"""Opt-in credential tests (issue 13, part 5): n8n's own Test button on the restored instance,
against services this test starts on loopback: an HTTP API that checks its key header and a
real PostgreSQL role. Without --test-credentials the services get no request."""

from __future__ import annotations

import http.server
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.cli_support import run_snapshot_cli
from tests.docker_support import DOCKER_ARGS, PROCESS_ARGS
from tests.n8n_support import SourceInstance, process_source_args, start_source
from tests.postgres_support import PostgresServer
from tests.verify_runner import VERIFY_CHECKS, report_with_attachments, run_verify

ROLE = "credtest"
DATABASE = "credtest"


class KeyCheckingApi:
    """An HTTP server on loopback that answers 200 only to requests carrying its API key."""

    def __init__(self, key: str) -> None:
        self.hits = 0
        expected = key
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                ok = self.headers.get("X-N8N-API-KEY") == expected
                body = b'{"data": []}' if ok else b'{"message": "unauthorized"}'
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Services:
    api: KeyCheckingApi
    api_key: str
    postgres: PostgresServer
    role_password: str

    def postgres_sessions(self) -> int:
        """Sessions ever opened on the credentials' database (pg_stat_database)."""
        with psycopg.connect(self.postgres.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_stat_force_next_flush()")
            row = conn.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    api_key = secrets.token_hex(16)
    api = KeyCheckingApi(api_key)
    postgres = PostgresServer().start()
    password = secrets.token_urlsafe(12)
    try:
        with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        yield Services(api, api_key, postgres, password)
    finally:
        api.close()
        postgres.stop()


def _credentials(services: Services) -> list[tuple[str, str, dict[str, object]]]:
    pg = {
        "host": "127.0.0.1",
        "port": services.postgres.port,
        "database": DATABASE,
        "user": ROLE,
        "ssl": "disable",
        "allowUnauthorizedCerts": False,
        "sshTunnel": False,
    }
    return [
        ("API right", "n8nApi", {"apiKey": services.api_key, "baseUrl": services.api.url}),
        ("API wrong", "n8nApi", {"apiKey": "not-the-key-1234", "baseUrl": services.api.url}),
        ("PG right", "postgres", {**pg, "password": services.role_password}),
        ("PG wrong", "postgres", {**pg, "password": "not-the-password-5678"}),
        ("Basic, no test", "httpBasicAuth", {"user": "u", "password": "no-test-9012"}),
    ]


@pytest.fixture(scope="module")
def credential_snapshot(
    launcher: Path, services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("credential-tests")
    source: SourceInstance = start_source(launcher, base / "source")
    try:
        for name, type_, data in _credentials(services):
            source.api.create_credential(name, type_, data)
        keys = base / "keys"
        path = run_snapshot_cli(
            source.api_key, base / "snapshots", keys, *process_source_args(source)
        )
    finally:
        source.api.close()
        source.process.close()
    yield path, keys


def test_without_the_flag_the_services_get_no_request(
    pytester: pytest.Pytester, services: Services, credential_snapshot: tuple[Path, Path]
) -> None:
    path, keys = credential_snapshot
    hits, sessions = services.api.hits, services.postgres_sessions()
    run = run_verify(pytester, path, keys, "--quiet-seconds", "1", *PROCESS_ARGS)
    run.result.assert_outcomes(passed=VERIFY_CHECKS, deselected=1)
    assert "not run (opt-in: --test-credentials)" in run.report.read_text(encoding="utf-8")
    assert services.api.hits == hits
    assert services.postgres_sessions() == sessions


@pytest.mark.parametrize("runtime_args", [PROCESS_ARGS, DOCKER_ARGS], ids=["process", "docker"])
def test_credential_tests_pass_with_the_right_secret_and_fail_with_a_wrong_one(
    pytester: pytest.Pytester,
    services: Services,
    credential_snapshot: tuple[Path, Path],
    runtime_args: tuple[str, ...],
    request: pytest.FixtureRequest,
) -> None:
    if "docker" in runtime_args:
        request.getfixturevalue("n8n_image")
    path, keys = credential_snapshot
    hits, sessions = services.api.hits, services.postgres_sessions()
    run = run_verify(
        pytester, path, keys, "--quiet-seconds", "1", "--test-credentials", *runtime_args
    )
    case = path.name
    assert set(run.failures) == {f"test_credentials_connect[{case}]"}, run.failures
    failure = run.failures[f"test_credentials_connect[{case}]"]
    assert "'API wrong', n8nApi" in failure and "'PG wrong', postgres" in failure
    assert "password authentication failed" in failure
    assert "API right" not in failure and "PG right" not in failure
    text = report_with_attachments(run.report)
    assert "passed 2" in text and "no test available 1: Basic, no test" in text
    assert "--test-credentials: HTTP(S) goes to a closed proxy except to 127.0.0.1;" in text
    for secret in (services.api_key, services.role_password, "not-the-key-1234"):
        assert secret not in text, "a credential value reached the report"
    assert services.api.hits >= hits + 2  # the right and the wrong key, each asked
    assert services.postgres_sessions() > sessions
