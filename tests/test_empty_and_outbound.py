"""An instance with nothing in it verifies; a restored instance calls nothing outside.

Both on real n8n 2.40.7 processes. The outbound check points every endpoint n8n lets us
configure at a loopback canary and counts what arrives; a control run with one feature left on
shows that the canary would see it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup.keystore import KeyStore
from backup.manifest import Counts, Manifest
from backup.n8n import npm
from backup.n8n.instances.base import outbound_env
from backup.n8n.instances.process import N8nProcess
from backup.secret import Secret
from tests.cli_support import run_snapshot_cli
from tests.docker_support import PROCESS_ARGS
from tests.n8n_support import Canary, TakenSnapshot, process_source_args, start_source
from tests.verify_runner import VERIFY_CHECKS, run_verify
from verify.restore import restore_to_temp

QUIET_WINDOW_SECONDS = 20.0


def test_empty_instance_verifies_and_the_report_says_what_is_empty(
    pytester: pytest.Pytester, launcher: Path, tmp_path: Path
) -> None:
    source = start_source(launcher, tmp_path / "empty-n8n")  # an owner and an API key, nothing else
    try:
        path = run_snapshot_cli(
            source.api_key, tmp_path / "snapshots", tmp_path / "keys", *process_source_args(source)
        )
    finally:
        source.api.close()
        source.process.close()
    assert Manifest.load(path).counts == Counts(workflows=0, credentials=0, executions=0)

    run = run_verify(pytester, path, tmp_path / "keys", "--quiet-seconds", "2", *PROCESS_ARGS)

    run.result.assert_outcomes(passed=VERIFY_CHECKS)
    assert "no workflows, no credentials, no executions" in run.report.read_text(encoding="utf-8")


@pytest.fixture
def outbound_canary() -> Iterator[Canary]:
    server = Canary()
    yield server
    server.close()


def boot_restored(
    taken: TakenSnapshot, launcher: Path, env: dict[str, str], window: float
) -> list[str]:
    """Boot the shared snapshot restored (made inert) with ``env``; keep it up for ``window``
    seconds after it is ready."""
    manifest = Manifest.load(taken.path)
    key = Secret(KeyStore(taken.key_store).load(manifest.key_fingerprint))
    folder = restore_to_temp(taken.path, manifest, key)
    try:
        with N8nProcess(
            launcher, folder.user_folder, key.reveal(), extra_env=env, boot_timeout=240
        ) as process:
            time.sleep(window)
            return [line for line in process.logs().splitlines() if "mcp" in line.lower()]
    finally:
        folder.cleanup()


def test_restored_instance_calls_nothing_outside(
    taken: TakenSnapshot, launcher: Path, outbound_canary: Canary
) -> None:
    env = outbound_env(npm.DEFAULT_N8N_VERSION, sink=outbound_canary.base)
    boot_restored(taken, launcher, env, QUIET_WINDOW_SECONDS)
    assert outbound_canary.hits == 0, f"n8n called out: {outbound_canary.paths}"


def test_the_canary_would_see_a_feature_left_on(
    taken: TakenSnapshot, launcher: Path, outbound_canary: Canary
) -> None:
    """Control: the MCP registry module left on, pointed at the canary, is seen calling."""
    env = outbound_env(npm.DEFAULT_N8N_VERSION, sink=outbound_canary.base)
    env.update(
        {
            "N8N_DISABLED_MODULES": "",
            "ENVIRONMENT": "dev",
            "N8N_MCP_SERVERS_DEV_URL": f"{outbound_canary.base}/api/mcp-servers",
        }
    )
    said = boot_restored(taken, launcher, env, QUIET_WINDOW_SECONDS)
    assert outbound_canary.hits > 0, f"the control saw no request; n8n said: {said[-3:]}"
