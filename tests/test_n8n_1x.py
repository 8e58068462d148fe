"""n8n 1.x: a restore with the wrong key starts and serves the UI while every credential is dead.

The verify suite must fail it, naming the key, as it does on 2.x where n8n refuses to start.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from docker.client import DockerClient

from backup.digests import sha256_file
from backup.manifest import FileEntry, Manifest
from backup.n8n import npm
from backup.n8n.api import N8nApi
from backup.n8n.instances.docker_sessions import SESSION_LABEL
from backup.n8n.instances.process import N8nProcess
from backup.n8n.postgres import PostgresTarget, n8n_database_env
from tests.cli_support import run_snapshot_cli
from tests.docker_support import (
    DOCKER_ARGS,
    PROCESS_ARGS,
    EngineOverTcp,
    build_image,
    engine_objects,
    left_behind,
)
from tests.n8n_support import (
    BOOT_TIMEOUT,
    Canary,
    SourceInstance,
    arm_canary,
    disarm_canary,
    process_source_args,
    seed,
    start_source,
)
from tests.postgres_support import PostgresServer
from tests.rich_source import add_free_entities
from tests.verify_runner import (
    VERIFY_CHECKS,
    VerifyRun,
    assert_wrong_key_caught_before_boot,
    report_with_attachments,
    resign_manifest,
    run_verify,
    wrong_key_store,
)
from verify.bootstrap import create_owner_and_api_key

N8N_1X = "1.123.81"


def caller_of(workflow_id: str) -> dict[str, Any]:
    """A workflow that calls ``workflow_id`` through an Execute Workflow node."""
    return {
        "name": "Calls the sub-workflow",
        "nodes": [
            {
                "id": "ca110000-0000-4000-8000-000000000001",
                "name": "Manual start",
                "type": "n8n-nodes-base.manualTrigger",
                "typeVersion": 1,
                "position": [0, 0],
                "parameters": {},
            },
            {
                "id": "ca110000-0000-4000-8000-000000000002",
                "name": "Call it",
                "type": "n8n-nodes-base.executeWorkflow",
                "typeVersion": 1,
                "position": [220, 0],
                "parameters": {"source": "database", "workflowId": workflow_id},
            },
        ],
        "connections": {
            "Manual start": {"main": [[{"node": "Call it", "type": "main", "index": 0}]]}
        },
        "settings": {"executionOrder": "v1"},
    }


SUB_WORKFLOW: dict[str, Any] = {
    "name": "Called by others",
    "nodes": [
        {
            "id": "5b0b0000-0000-4000-8000-000000000001",
            "name": "When called by another workflow",
            "type": "n8n-nodes-base.executeWorkflowTrigger",
            "typeVersion": 1,
            "position": [0, 0],
            "parameters": {},
        },
        {
            "id": "5b0b0000-0000-4000-8000-000000000002",
            "name": "Do nothing",
            "type": "n8n-nodes-base.noOp",
            "typeVersion": 1,
            "position": [220, 0],
            "parameters": {},
        },
    ],
    "connections": {
        "When called by another workflow": {
            "main": [[{"node": "Do nothing", "type": "main", "index": 0}]]
        }
    },
    "settings": {"executionOrder": "v1"},
}


def assert_only_removed_nodes_fail(run: VerifyRun, case: str) -> None:
    """The corpus on n8n 2.x: the one failure is what the upgrade breaks, named: the Start
    node is gone in 2.x and Execute Command is excluded by default."""
    assert set(run.failures) == {f"test_node_types_load[{case}]"}, run.failures
    said = run.failures[f"test_node_types_load[{case}]"]
    assert "n8n-nodes-base.start v1 (not in this n8n) used by" in said
    assert "('Production Workflow" in said  # the corpus's; a test may have edited its name
    assert "n8n-nodes-base.executeCommand v1 (not in this n8n)" in said


@pytest.fixture(scope="module")
def snapshot_1x(
    tmp_path_factory: pytest.TempPathFactory, canary: Canary
) -> Iterator[tuple[Path, Path, SourceInstance]]:
    """n8n 1.x holding the real-workflow corpus (with its sub-workflows), a sub-workflow of
    ours, and a schedule that has reached the canary before the snapshot."""
    launcher = npm.install(N8N_1X, log=False)
    source = start_source(launcher, tmp_path_factory.mktemp("source-1x"))
    try:
        source.seeded_secrets = seed(source.api, corpus=True, generated=5)
        add_free_entities(source)
        # n8n 2.x's migrations publish every sub-workflow (active, with an activeVersionId):
        # the upgrade must still boot with nothing active.
        called = source.api.create_workflow(SUB_WORKFLOW)
        source.api.create_workflow(caller_of(str(called["id"])))
        base = tmp_path_factory.mktemp("backups-1x")
        arm_canary(source, canary)
        path = run_snapshot_cli(
            source.api_key, base / "snapshots", base / "keys", *process_source_args(source)
        )
        disarm_canary(source)
        yield path, base / "keys", source
    finally:
        source.api.close()
        source.process.close()


@pytest.fixture(params=["process", "docker"])
def runtime_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Each test runs on both runtimes; docker needs the 1.x image (built once, cached)."""
    if request.param == "docker":
        request.getfixturevalue("docker_client")
        build_image(N8N_1X)
        return DOCKER_ARGS
    return PROCESS_ARGS


def test_1x_snapshot_verifies_on_1x_and_after_the_upgrade_to_2x(
    pytester: pytest.Pytester,
    snapshot_1x: tuple[Path, Path, SourceInstance],
    runtime_args: tuple[str, ...],
    canary: Canary,
) -> None:
    """The upgrade rehearsal: one group per target, every workflow and credential digest
    matching on both, and the migrations that 2.x ran listed in the report."""
    path, keys, _ = snapshot_1x
    manifest = Manifest.load(path)
    assert manifest.source_n8n_version == N8N_1X
    assert len({w.name for w in manifest.workflows}) > 100, "the corpus is not in the snapshot"
    targets = f"{N8N_1X},{npm.DEFAULT_N8N_VERSION}"
    hits_before = canary.hits
    run = run_verify(
        pytester, path, keys, "--n8n-version", targets, "--quiet-seconds", "6", *runtime_args
    )
    assert canary.hits == hits_before, "a restored instance fired the source's schedule"
    assert_only_removed_nodes_fail(run, f"{path.name}@{npm.DEFAULT_N8N_VERSION}")
    run.result.assert_outcomes(passed=2 * VERIFY_CHECKS - 1, failed=1, deselected=2)
    text = run.report.read_text(encoding="utf-8")
    for target in (N8N_1X, npm.DEFAULT_N8N_VERSION):  # the entities came through the upgrade
        row = text.split(f"{path.name}@{target}", 1)[1].split("</tr>", 1)[0]
        assert "tags 2/2" in row and "data table rows 5/5" in row and "users 2/2" in row
    for target in (N8N_1X, npm.DEFAULT_N8N_VERSION):
        assert f"test_workflows_load[{path.name}@{target}]" in text
    assert "migrations run on restore" in text
    restored_on_2x = text.split(f"{path.name}@2.40.7", 1)[1]
    assert re.search(
        r'<td data-label="migrations run on restore">[1-9][0-9]*: [A-Za-z0-9]+', restored_on_2x
    ), "no migration listed"
    # What the upgrade changed, in words: the published sub-workflows, the disabled triggers.
    record = json.loads((path.parent / f"{path.name}.verified.json").read_text())
    changes = next(t for t in record["targets"] if t["target_version"] == "2.40.7")
    changed = changes["upgrade_changes"]
    called = [name for name in changed if name.endswith("(Called by others)")]
    assert called and changed[called[0]][0].startswith("activated by the migration")
    activated = [n for n, said in changed.items() if said[0].startswith("activated by")]
    assert len(activated) >= 5, f"the corpus sub-workflows were not reported: {sorted(changed)}"
    assert any("disabled" in change for said in changed.values() for change in said)
    assert "activated by the migration (sub-workflow published)" in html.unescape(restored_on_2x)
    same_version = next(t for t in record["targets"] if t["target_version"] == N8N_1X)
    assert same_version["upgrade_changes"] == {}


def test_1x_upgrade_to_2x_verifies_on_a_remote_engine(
    pytester: pytest.Pytester,
    snapshot_1x: tuple[Path, Path, SourceInstance],
    docker_client: DockerClient,
    remote_engine: EngineOverTcp,
    canary: Canary,
) -> None:
    """The upgrade rehearsal on an engine that sees none of this machine's files, on the
    snapshot's own 1.x and on 2.x: the verdicts and upgrade changes of a local run, with the
    data shipped through the engine's API (no path of this machine given to it) and nothing of
    the run left on the engine."""
    path, keys, _ = snapshot_1x
    hits_before = canary.hits
    targets = ("--n8n-version", f"{N8N_1X},{npm.DEFAULT_N8N_VERSION}")
    ours = {"label": SESSION_LABEL}
    before = engine_objects(docker_client, ours)
    run = run_verify(pytester, path, keys, *targets, "--quiet-seconds", "6", *DOCKER_ARGS)
    assert canary.hits == hits_before, "a restored instance fired the source's schedule"
    assert_only_removed_nodes_fail(run, f"{path.name}@{npm.DEFAULT_N8N_VERSION}")
    run.result.assert_outcomes(passed=2 * VERIFY_CHECKS - 1, failed=1, deselected=2)
    text = run.report.read_text(encoding="utf-8")
    assert text.count("remote engine 127.0.0.1: data shipped into a volume") >= 2
    for target in (N8N_1X, npm.DEFAULT_N8N_VERSION):
        row = text.split(f"{path.name}@{target}", 1)[1].split("</tr>", 1)[0]
        assert "tags 2/2" in row and "data table rows 5/5" in row and "users 2/2" in row
    record = json.loads((path.parent / f"{path.name}.verified.json").read_text())
    changed = record["targets"][-1]["upgrade_changes"]
    assert any(said[0].startswith("activated by the migration") for said in changed.values())
    # What the engine was asked: volumes only, never a folder of this machine; the restored
    # folder went in through the archive API.
    assert remote_engine.binds, "the engine was asked for no mount at all"
    assert [bind for bind in remote_engine.binds if bind.startswith("/")] == []
    assert any(r.startswith("PUT ") and "/archive?path=" in r for r in remote_engine.requests)
    assert left_behind(docker_client, ours, before) == []


def test_1x_wrong_key_is_caught_before_boot(
    pytester: pytest.Pytester,
    snapshot_1x: tuple[Path, Path, SourceInstance],
    tmp_path: Path,
    runtime_args: tuple[str, ...],
) -> None:
    path, _, source = snapshot_1x
    fingerprint = Manifest.load(path).key_fingerprint
    wrong_key = "wrong-1x-key-0123456789abcdef"
    wrong_store = wrong_key_store(tmp_path / "wrong-keys", path, wrong_key)
    run = run_verify(pytester, path, wrong_store, "--quiet-seconds", "3", *runtime_args)
    # n8n 1.x would start on a wrong key with every credential dead; the manifest's MAC
    # catches the key before anything boots.
    assert_wrong_key_caught_before_boot(run, path, fingerprint)
    text = report_with_attachments(run.report)
    for secret in [wrong_key, source.encryption_key, *source.seeded_secrets]:
        assert secret not in text, "a key or secret reached the HTML report"


@pytest.fixture(scope="module")
def pg_snapshot_1x(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, Path, PostgresServer]]:
    """n8n 1.x on PostgreSQL (schema public) holding the corpus and a sub-workflow."""
    server = PostgresServer().start()
    launcher = npm.install(N8N_1X, log=False)
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE n8n_1x")
    env = n8n_database_env(PostgresTarget.from_dsn(server.dsn("n8n_1x")))
    base = tmp_path_factory.mktemp("pg-1x")
    process = N8nProcess(launcher, base / "n8n", None, extra_env=env)
    try:
        process.start(timeout=BOOT_TIMEOUT)
        api_key = create_owner_and_api_key(process.base_url)
        api = N8nApi(process.base_url, api_key)
        try:
            seed(api, corpus=True, generated=2)
            api.create_workflow(SUB_WORKFLOW)
        finally:
            api.close()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PGPASSWORD", server.password)
            path = run_snapshot_cli(
                api_key,
                base / "snapshots",
                base / "keys",
                "--postgres",
                f"postgresql://postgres@127.0.0.1:{server.port}/n8n_1x",
                "--n8n-folder",
                str(process.user_folder),
                "--api-url",
                process.base_url,
            )
    finally:
        process.close()
    yield path, base / "keys", server
    server.stop()


def test_1x_on_postgres_upgrades_to_2x_with_nothing_active(
    pytester: pytest.Pytester,
    pg_snapshot_1x: tuple[Path, Path, PostgresServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, keys, server = pg_snapshot_1x
    monkeypatch.setenv("PGPASSWORD", server.password)
    dsn = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    run = run_verify(
        pytester,
        path,
        keys,
        "--n8n-version",
        npm.DEFAULT_N8N_VERSION,
        "--postgres-dsn",
        dsn,
        "--quiet-seconds",
        "3",
        *PROCESS_ARGS,
    )
    assert_only_removed_nodes_fail(run, f"{path.name}@{npm.DEFAULT_N8N_VERSION}")
    run.result.assert_outcomes(passed=VERIFY_CHECKS - 1, failed=1, deselected=1)
    record = json.loads((path.parent / f"{path.name}.verified.json").read_text())
    changed = record["targets"][0]["upgrade_changes"]
    activated = [name for name, said in changed.items() if said[0].startswith("activated by")]
    assert any(name.endswith("(Called by others)") for name in activated), sorted(changed)


def test_a_damaged_workflow_row_fails_the_upgrade_with_its_name(
    pytester: pytest.Pytester, snapshot_1x: tuple[Path, Path, SourceInstance], tmp_path: Path
) -> None:
    """A workflow row cut short in the database copy (the manifest re-signed by a writer that
    did not notice) is damage, not a change made by the upgrade."""
    path, keys, _ = snapshot_1x
    damaged = tmp_path / path.name
    shutil.copytree(path, damaged)
    victim = Manifest.load(damaged).workflows[0]
    with closing(sqlite3.connect(damaged / "database.sqlite")) as conn:
        conn.execute("UPDATE workflow_entity SET nodes = '[]' WHERE id = ?", (victim.id,))
        conn.commit()
    database = damaged / "database.sqlite"
    files = [
        FileEntry(e.path, sha256_file(database), database.stat().st_size)
        if e.path == "database.sqlite"
        else e
        for e in Manifest.load(damaged).files
    ]
    resign_manifest(damaged, keys, files=files)
    run = run_verify(
        pytester,
        damaged,
        keys,
        "--n8n-version",
        npm.DEFAULT_N8N_VERSION,
        "--quiet-seconds",
        "2",
        *PROCESS_ARGS,
    )
    counts = run.failures[f"test_counts[{path.name}@{npm.DEFAULT_N8N_VERSION}]"]
    assert f"workflow {victim.id} ({victim.name!r}) in the database copy differs" in counts
