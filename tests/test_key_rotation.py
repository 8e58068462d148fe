"""n8n 2.x key rotation: credentials written as ``<keyId>:<base64>`` with a data key from the
deployment_key table decrypt in the independent Python check, and the snapshot verifies."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from backup.manifest import Manifest
from backup.n8n.api import N8nApi
from backup.n8n.instances.process import N8nProcess
from tests.cli_support import run_snapshot_cli
from tests.docker_support import PROCESS_ARGS
from tests.n8n_support import BOOT_TIMEOUT, SourceInstance, process_source_args, seed
from tests.verify_runner import VERIFY_CHECKS, report_with_attachments, run_verify
from verify.bootstrap import create_owner_and_api_key

ROTATION_FLAG = {"N8N_ENV_FEAT_ENCRYPTION_KEY_ROTATION": "true"}


@pytest.fixture(scope="module")
def rotating_source(
    launcher: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SourceInstance]:
    process = N8nProcess(
        launcher, tmp_path_factory.mktemp("rotation"), None, extra_env=ROTATION_FLAG
    )
    try:
        process.start(timeout=BOOT_TIMEOUT)
        api_key = create_owner_and_api_key(process.base_url)
        source = SourceInstance(process, api_key, N8nApi(process.base_url, api_key))
        source.seeded_secrets = seed(source.api, corpus=False, generated=3)
        yield source
        source.api.close()
    finally:
        process.close()


def test_rotated_credentials_snapshot_and_verify(
    pytester: pytest.Pytester, rotating_source: SourceInstance, tmp_path: Path
) -> None:
    database = rotating_source.n8n_folder / "database.sqlite"
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        stored = [row[0] for row in conn.execute("SELECT data FROM credentials_entity")]
        data_keys = conn.execute(
            "SELECT COUNT(*) FROM deployment_key WHERE type = 'data_encryption'"
        ).fetchone()[0]
    assert stored and all(re.match(r"^[A-Za-z0-9_-]{1,36}:", data) for data in stored), (
        "n8n did not write credentials in the key-rotation format"
    )
    assert data_keys >= 1
    path = run_snapshot_cli(
        rotating_source.api_key,
        tmp_path / "snapshots",
        tmp_path / "keys",
        *process_source_args(rotating_source),
    )
    assert Manifest.load(path).counts.credentials == len(stored)
    run = run_verify(pytester, path, tmp_path / "keys", *PROCESS_ARGS, "--quiet-seconds", "2")
    assert run.failures == {}
    run.result.assert_outcomes(passed=VERIFY_CHECKS)
    text = report_with_attachments(run.report)
    assert not any(secret in text for secret in rotating_source.seeded_secrets)
