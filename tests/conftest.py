"""Shared fixtures for this project's tests (helpers live in the *_support modules): real n8n
instances, seeded, a loopback canary, the Docker engine and images.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# httpx imports httpcore on its first request. Were that inside a test using pytester, pytester
# would drop httpcore from sys.modules afterwards; imported again, its exceptions are new classes
# that httpx no longer maps (a raw httpcore.ConnectError escapes n8n's readiness polling).
import httpcore  # noqa: F401
import pytest
from docker.client import DockerClient
from docker.errors import DockerException

from backup.abandoned import remove_abandoned
from backup.n8n import npm
from backup.n8n.instances.docker_sessions import remove_abandoned_sessions
from tests.cli_support import snapshot_under_load
from tests.docker_support import EngineOverTcp
from tests.n8n_support import (
    GENERATED_WORKFLOWS,
    Canary,
    SourceInstance,
    TakenSnapshot,
    arm_canary,
    disarm_canary,
    process_source_args,
    seed,
    start_source,
)

pytest_plugins = ["pytester", "tests.repository_servers", "tests.ssh_engine"]


@pytest.fixture(scope="session", autouse=True)
def shared_runtime_cache() -> None:
    """Pin the runtime cache: pytester gives subprocesses a HOME of their own, and a verify run
    there would otherwise install n8n again (minutes, and 2.8 GB per test)."""
    os.environ.setdefault(npm.CACHE_ENV, str(npm.cache_root()))


@pytest.fixture(scope="session", autouse=True)
def no_leftovers_of_killed_runs() -> None:
    """What runs killed before this session left in the temporary folder (an interrupted
    session, a killed-run experiment) goes first: n8n-backup and verify would otherwise say
    so on their first run, in the output that tests read line by line."""
    remove_abandoned()


@pytest.fixture(scope="session")
def launcher() -> Path:
    """The default n8n runtime (2.40.7), installed on first use."""
    return npm.install(npm.DEFAULT_N8N_VERSION, log=False)


@pytest.fixture(scope="session")
def canary() -> Iterator[Canary]:
    """A loopback HTTP server that counts requests from workflows."""
    server = Canary()
    yield server
    server.close()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[DockerClient]:
    """The local Docker engine; its absence fails the tests that need it (never a skip)."""
    try:
        client = DockerClient.from_env()
        client.ping()
    except DockerException as exc:
        pytest.fail(
            f"no Docker engine answers ({exc}): run scripts/docker-engine.sh", pytrace=False
        )
    remove_abandoned_sessions()  # of runs killed before this session (see above)
    yield client
    client.close()


@pytest.fixture
def remote_engine(
    docker_client: DockerClient, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EngineOverTcp]:
    """This machine's engine reached as a remote one is: DOCKER_HOST=tcp://127.0.0.1:PORT."""
    engine = EngineOverTcp()
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def n8n_image(docker_client: DockerClient) -> str:
    """The locally built n8n image for the default version (built once, cached by Docker)."""
    from tests.docker_support import build_image

    return build_image()


@pytest.fixture(scope="session")
def source(
    launcher: Path, canary: Canary, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SourceInstance]:
    instance = start_source(launcher, tmp_path_factory.mktemp("source"))
    try:
        instance.seeded_secrets = seed(instance.api, corpus=True, generated=GENERATED_WORKFLOWS)
        custom = instance.n8n_folder / "custom"
        custom.mkdir()
        (custom / "package.json").write_text('{"name": "my-custom-nodes"}')
        arm_canary(instance, canary)
        yield instance
    finally:
        instance.api.close()
        instance.process.close()


@pytest.fixture(scope="session")
def taken(source: SourceInstance, tmp_path_factory: pytest.TempPathFactory) -> TakenSnapshot:
    """A snapshot taken while another client keeps creating workflows."""
    base = tmp_path_factory.mktemp("backups")
    path, during = snapshot_under_load(
        source.process.base_url,
        source.api_key,
        base / "snapshots",
        base / "keys",
        *process_source_args(source),
    )
    disarm_canary(source)
    return TakenSnapshot(path, base / "keys", during)
