"""Before a backup, running executions are waited for (bounded), or --force goes ahead and the
manifest says so. A real n8n runs a real long execution (a Wait node behind a webhook)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backup.manifest import Manifest, find_snapshots
from tests.cli_support import run_backup_cli, snapshot_args
from tests.n8n_support import BOOT_TIMEOUT, SourceInstance, process_source_args, start_source

WAIT_SECONDS = 12


def slow_webhook_workflow(path: str) -> dict[str, Any]:
    """A webhook that answers at once, then waits WAIT_SECONDS: a running execution."""
    return {
        "name": "Slow webhook",
        "nodes": [
            {
                "id": "d0000000-0000-4000-8000-000000000001",
                "name": "Webhook",
                "type": "n8n-nodes-base.webhook",
                "typeVersion": 2,
                "position": [0, 0],
                "webhookId": path,
                "parameters": {"path": path, "httpMethod": "GET", "responseMode": "onReceived"},
            },
            {
                "id": "d0000000-0000-4000-8000-000000000002",
                "name": "Wait",
                "type": "n8n-nodes-base.wait",
                "typeVersion": 1.1,
                "position": [220, 0],
                "parameters": {"resume": "timeInterval", "amount": WAIT_SECONDS, "unit": "seconds"},
            },
        ],
        "connections": {"Webhook": {"main": [[{"node": "Wait", "type": "main", "index": 0}]]}},
        "settings": {"executionOrder": "v1"},
    }


@pytest.fixture(scope="module")
def busy_source(
    launcher: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SourceInstance, str]]:
    source = start_source(launcher, tmp_path_factory.mktemp("busy"))
    try:
        path = f"slow-{secrets.token_hex(4)}"
        created = source.api.create_workflow(slow_webhook_workflow(path))
        source.api.activate_workflow(str(created["id"]))
        yield source, f"{source.process.base_url}/webhook/{path}"
    finally:
        source.api.close()
        source.process.close()


def start_long_execution(source: SourceInstance, webhook: str) -> None:
    # Activation registers the webhook asynchronously: it can answer 404 for a moment.
    deadline = time.monotonic() + 60
    while httpx.get(webhook, timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the webhook was never registered"
        time.sleep(0.5)
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if source.api.running_executions():
            return
        time.sleep(0.2)
    raise AssertionError("the slow execution never showed as running")


def test_timeout_then_wait_then_force(
    busy_source: tuple[SourceInstance, str], tmp_path: Path
) -> None:
    source, webhook = busy_source
    args = snapshot_args(
        source.api_key, tmp_path / "out", tmp_path / "keys", *process_source_args(source)
    )

    start_long_execution(source, webhook)
    timed_out = run_backup_cli(*args, "--wait-timeout", "2")
    assert timed_out.returncode == 3, timed_out.stderr
    assert "waiting up to 2 s for 1 running execution(s) to finish" in timed_out.stderr
    assert timed_out.stderr.strip().splitlines()[-1] == (
        "n8n-backup: error: 1 execution(s) still running after 2 s: try again later, raise "
        "--wait-timeout, or pass --force to back up anyway"
    )
    assert not (tmp_path / "out").exists() or find_snapshots(tmp_path / "out") == []

    started = time.monotonic()
    waited = run_backup_cli(*args, "--wait-timeout", "120")
    assert waited.returncode == 0, waited.stderr
    assert "still running after" in waited.stderr
    assert time.monotonic() - started > 2, "it did not wait for the execution"
    assert (
        Manifest.load(Path(waited.stdout.strip().splitlines()[-1])).forced_with_running_executions
        == 0
    )

    start_long_execution(source, webhook)
    forced = run_backup_cli(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "--force: taking the snapshot while 1 execution(s) are running" in forced.stderr
    manifest = Manifest.load(Path(forced.stdout.strip().splitlines()[-1]))
    assert manifest.forced_with_running_executions == 1
