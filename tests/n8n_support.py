"""Real n8n instances for tests: a seeded source, the corpus, a loopback canary.

Every instance is a real n8n from the npm registry (installed on first use into the per-user
cache); nothing is mocked. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from backup.n8n.api import N8nApi
from backup.n8n.instances.process import N8nProcess
from tests.cli_support import ROOT
from verify.bootstrap import (
    create_owner_and_api_key,
    sample_credentials,
    sample_workflow,
)

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
    """An HTTP server on loopback that counts the requests it gets, whatever their method, and
    answers each with JSON (on ``port``, or on one of its own)."""

    def __init__(self, port: int = 0) -> None:
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

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
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
    api: N8nApi
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


def start_source(
    launcher: Path, folder: Path, extra_env: dict[str, str] | None = None
) -> SourceInstance:
    """Boot a fresh n8n (it makes its own key) with an owner and an API key."""
    process = N8nProcess(launcher, folder, None, extra_env=extra_env)
    try:
        process.start(timeout=BOOT_TIMEOUT)
        api_key = create_owner_and_api_key(process.base_url)
    except BaseException:
        process.close()
        raise
    return SourceInstance(process, api_key, N8nApi(process.base_url, api_key))


def seed(api: N8nApi, *, corpus: bool, generated: int) -> list[str]:
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
    source.api.deactivate_workflow(source.canary_workflow_id)
    time.sleep(6)  # a run already scheduled may still land


def process_source_args(source: SourceInstance) -> list[str]:
    """Snapshot arguments for a local n8n process."""
    return ["--n8n-folder", str(source.process.user_folder), "--api-url", source.process.base_url]


GENERATED_WORKFLOWS = 130


@dataclass(frozen=True)
class TakenSnapshot:
    """The shared snapshot of the seeded source, taken under write load."""

    path: Path
    key_store: Path
    writes_during_snapshot: int


def flip_middle_byte(path: Path) -> None:
    """Damage a file by one bit in its middle, its size unchanged."""
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def copy_variant(taken: TakenSnapshot, root: Path, name: str) -> Path:
    """A copy of the shared snapshot under ``root``, to damage or alter."""
    target = root / name
    shutil.copytree(taken.path, target)
    return target


def restored_folders() -> set[str]:
    """The names of verify's restore folders in the temporary folder."""
    return {p.name for p in Path(tempfile.gettempdir()).glob("n8n-restore-*")}


def instances_of(folders: set[str]) -> list[int]:
    """Running processes whose n8n user folder is one of these restore folders."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"N8N_USER_FOLDER=/") and any(
                name.encode() in entry for name in folders
            ):
                found.append(int(proc.name))
    return found


def wait_for_restored_instances(
    before: set[str], count: int = 1, seconds: float = 240, runner: Any = None
) -> list[int]:
    """The n8n processes running on restore folders made since ``before``, once ``count`` of
    them run, ``seconds`` have passed, or ``runner`` (a Popen that started them) has ended."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (runner is None or runner.poll() is None):
        running = instances_of(restored_folders() - before)
        if len(running) >= count:
            return running
        time.sleep(0.5)
    return instances_of(restored_folders() - before)


def wait_until_restored_instances_stop(before: set[str], seconds: float = 30) -> list[int]:
    """The n8n processes still running on restore folders made since ``before`` after up to
    ``seconds`` of waiting for them to stop (empty once all stopped)."""
    deadline = time.monotonic() + seconds
    while instances_of(restored_folders() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    return instances_of(restored_folders() - before)
