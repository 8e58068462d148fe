"""Shared fixtures for this project's tests: real n8n instances, seeded, and a loopback canary.

Every instance here is a real n8n from the npm registry (installed on first use into the per-user
cache); nothing is mocked. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from docker.client import DockerClient
from docker.errors import DockerException

from backup import runtime
from backup.instances.process import N8nProcess
from verify.bootstrap import (
    PublicApi,
    create_owner_and_api_key,
    sample_credentials,
    sample_workflow,
)

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus" / "real-workflows"
BOOT_TIMEOUT = 240.0
HOSTILE_NAMES = [
    "../../x",
    "..",
    "/etc/passwd",
    "a\\b\\c",
    "Ünïcödé ✓ 工作流 🚀",
    "CON",
    "<script>alert('x')</script>",
    "name with 'quotes' and \"double\"",
    "   leading and trailing   ",
    "x" * 128,
]


class Canary:
    """An HTTP server on loopback that counts the requests it gets, whatever their method."""

    def __init__(self) -> None:
        counter = self
        self.hits = 0
        self.paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                counter.hits += 1
                counter.paths.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "11")
                self.end_headers()
                self.wfile.write(b'{"ok":true}')

            do_GET = do_POST = do_PUT = do_HEAD = do_CONNECT = do_DELETE = answer

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/hit"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for_hit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.hits:
                return True
            time.sleep(0.5)
        return False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def canary_workflow(url: str) -> dict[str, Any]:
    """Every 5 seconds, GET the canary."""
    return {
        "name": "Canary every 5 s",
        "nodes": [
            {
                "id": "c0000000-0000-4000-8000-000000000001",
                "name": "Every 5 seconds",
                "type": "n8n-nodes-base.scheduleTrigger",
                "typeVersion": 1.2,
                "position": [0, 0],
                "parameters": {"rule": {"interval": [{"field": "seconds", "secondsInterval": 5}]}},
            },
            {
                "id": "c0000000-0000-4000-8000-000000000002",
                "name": "Call canary",
                "type": "n8n-nodes-base.httpRequest",
                "typeVersion": 4.2,
                "position": [220, 0],
                "parameters": {"url": url, "options": {}},
            },
        ],
        "connections": {
            "Every 5 seconds": {"main": [[{"node": "Call canary", "type": "main", "index": 0}]]}
        },
        "settings": {"executionOrder": "v1"},
    }


@dataclass
class SourceInstance:
    """A running, seeded n8n that tests back up."""

    process: N8nProcess
    api_key: str
    api: PublicApi
    seeded_secrets: list[str] = field(default_factory=list)
    canary_workflow_id: str = ""

    @property
    def n8n_folder(self) -> Path:
        return self.process.user_folder / ".n8n"

    @property
    def encryption_key(self) -> str:
        return str(json.loads((self.n8n_folder / "config").read_text())["encryptionKey"])


def corpus_workflows() -> list[dict[str, Any]]:
    """The real-world workflows from shared/, read in place."""
    files = sorted(CORPUS.glob("*.json"))
    assert len(files) >= 100, f"the workflow corpus is missing at {CORPUS}"
    return [json.loads(path.read_text(encoding="utf-8")) for path in files]


def start_source(launcher: Path, folder: Path) -> SourceInstance:
    """Boot a fresh n8n (it makes its own key) with an owner and an API key."""
    process = N8nProcess(launcher, folder, None)
    try:
        process.start(timeout=BOOT_TIMEOUT)
        api_key = create_owner_and_api_key(process.base_url)
    except BaseException:
        process.close()
        raise
    return SourceInstance(process, api_key, PublicApi(process.base_url, api_key))


def seed(api: PublicApi, *, corpus: bool, generated: int) -> list[str]:
    """Workflows (corpus, hostile names, generated) and credentials of three types.

    Returns the secret values written into the credentials.
    """
    seeded_secrets: list[str] = []
    workflows = corpus_workflows() if corpus else []
    workflows += [sample_workflow(name) for name in HOSTILE_NAMES]
    workflows += [sample_workflow(f"Generated {i:03d}", message=f"m{i}") for i in range(generated)]
    for workflow in workflows:
        api.create_workflow(workflow)
    for round_ in range(2):
        marker = f"seeded-{round_}-{secrets.token_hex(6)}"
        for name, type_, data in sample_credentials(marker):
            api.create_credential(f"{name} {round_}", type_, data)
            seeded_secrets.extend(str(v) for v in data.values() if marker in str(v))
    return seeded_secrets


def arm_canary(source: SourceInstance, canary: Canary) -> None:
    """Activate the canary workflow and wait until it has fired once on the source."""
    created = source.api.create_workflow(canary_workflow(canary.url))
    source.canary_workflow_id = str(created["id"])
    source.api.activate_workflow(source.canary_workflow_id)
    assert canary.wait_for_hit(60), "the canary workflow never fired on the source n8n"


def disarm_canary(source: SourceInstance) -> None:
    """Deactivate the canary on the source so that any later hit comes from a restore."""
    response = source.api.client.post(f"/workflows/{source.canary_workflow_id}/deactivate")
    assert response.status_code == 200, response.text
    time.sleep(6)  # a run already scheduled may still land


def backup_command(*args: str) -> list[str]:
    """The real ``n8n-backup`` command line with ``args``."""
    return [sys.executable, "-m", "backup", *args]


def run_backup_cli(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``n8n-backup`` in a subprocess."""
    return subprocess.run(
        backup_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def snapshot_args(api_key: str, out: Path, keys: Path, *source: str) -> list[str]:
    """Arguments of ``n8n-backup snapshot`` for ``source`` (--n8n-folder/--api-url or
    --container), with the API key in a private file beside ``out``."""
    key_file = out.parent / f"api-key-{secrets.token_hex(3)}"
    key_file.write_text(api_key)
    key_file.chmod(0o600)
    return [
        "snapshot",
        *source,
        "--api-key-file",
        str(key_file),
        "--out",
        str(out),
        "--key-store",
        str(keys),
    ]


def run_snapshot_cli(api_key: str, out: Path, keys: Path, *source: str) -> Path:
    """Take a snapshot with the CLI; return the folder it prints as its last line."""
    result = run_backup_cli(*snapshot_args(api_key, out, keys, *source))
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


def snapshot_under_load(
    base_url: str, api_key: str, out: Path, keys: Path, *source: str
) -> tuple[Path, int]:
    """Take a snapshot with the CLI while another client keeps creating workflows.

    Returns the snapshot and how many workflows were created while it was being taken.
    """
    stop = threading.Event()
    written: list[str] = []
    writer_api = PublicApi(base_url, api_key)

    def keep_writing() -> None:
        while not stop.is_set():
            created = writer_api.create_workflow(
                sample_workflow(f"Written under load {len(written)}")
            )
            written.append(str(created["id"]))

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while len(written) < 3:
            time.sleep(0.05)
        before = len(written)
        path = run_snapshot_cli(api_key, out, keys, *source)
        during = len(written) - before
    finally:
        stop.set()
        writer.join()
        writer_api.close()
    return path, during


def process_source_args(source: SourceInstance) -> list[str]:
    """Snapshot arguments for a local n8n process."""
    return ["--n8n-folder", str(source.process.user_folder), "--api-url", source.process.base_url]


@pytest.fixture(scope="session", autouse=True)
def shared_runtime_cache() -> None:
    """Pin the runtime cache: pytester gives subprocesses a HOME of their own, and a verify run
    there would otherwise install n8n again (minutes, and 2.8 GB per test)."""
    os.environ.setdefault(runtime.CACHE_ENV, str(runtime.cache_root()))


@pytest.fixture(scope="session")
def launcher() -> Path:
    """The default n8n runtime (2.40.7), installed on first use."""
    return runtime.install(runtime.DEFAULT_N8N_VERSION, log=False)


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
    yield client
    client.close()


@pytest.fixture(scope="session")
def n8n_image(docker_client: DockerClient) -> str:
    """The locally built n8n image for the default version (built once, cached by Docker)."""
    from tests.docker_support import build_image

    return build_image()


GENERATED_WORKFLOWS = 130


@dataclass(frozen=True)
class TakenSnapshot:
    """The shared snapshot of the seeded source, taken under write load."""

    path: Path
    key_store: Path
    writes_during_snapshot: int


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


def copy_variant(taken: TakenSnapshot, root: Path, name: str) -> Path:
    """A copy of the shared snapshot under ``root``, to damage or alter."""
    target = root / name
    shutil.copytree(taken.path, target)
    return target
