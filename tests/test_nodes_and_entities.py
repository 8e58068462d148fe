"""Issue 13 end to end: community and custom nodes, node types, binary data and the other
entities, from a real n8n 2.40.7 that installed a real community package from the npm
registry, through a snapshot, into fresh instances on both runtimes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup.digests import sha256_file
from backup.manifest import WORKFLOWS_DIR, FileEntry, Manifest
from backup.n8n.binary_data import ARCHIVE_NAME as BINARY_ARCHIVE
from backup.n8n.container import inspect_n8n_container
from backup.n8n.extensions import ARCHIVE_NAME
from backup.n8n.node_types import TYPES_PATH, loaded_node_types
from backup.n8n.session import EditorSession, instance_jwt_secret
from backup.n8n.sqlite import N8nDatabase
from backup.restore.database_slot import ROLLBACK_DIR
from backup.restore.fault_points import STAGED
from backup.secret import Secret
from tests.browser import rendered_dom, summary_results
from tests.cli_support import run_backup_cli, run_snapshot_cli, start_paused_backup_cli
from tests.docker_support import DOCKER_ARGS, PROCESS_ARGS, remove, run_n8n_container
from tests.n8n_support import process_source_args
from tests.rich_source import (
    COMMUNITY_PACKAGE,
    COMMUNITY_TYPE,
    COMMUNITY_VERSION,
    CUSTOM_TYPE,
    MISSING_TYPE,
    PINNED_NODE,
    RichSource,
    extensions_workflow,
    start_rich_source,
)
from tests.verify_runner import report_with_attachments, resign_manifest, run_verify


@pytest.fixture(scope="module")
def rich(launcher: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RichSource]:
    made = start_rich_source(launcher, tmp_path_factory.mktemp("rich-source"))
    try:
        yield made
    finally:
        made.source.api.close()
        made.source.process.close()


def _snapshot(rich: RichSource, snapshots: Path, keys: Path) -> Path:
    return run_snapshot_cli(rich.source.api_key, snapshots, keys, *process_source_args(rich.source))


@pytest.fixture(scope="module")
def rich_snapshot(rich: RichSource, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The rich source's snapshot and its key store."""
    base = tmp_path_factory.mktemp("rich-backups")
    return _snapshot(rich, base / "snapshots", base / "keys"), base / "keys"


def test_snapshot_records_packages_node_folders_and_entities(
    rich: RichSource, rich_snapshot: tuple[Path, Path]
) -> None:
    path, _ = rich_snapshot
    manifest = Manifest.load(path)
    (package,) = manifest.community_packages
    assert (package.name, package.version) == (COMMUNITY_PACKAGE, COMMUNITY_VERSION)
    assert package.node_types == [COMMUNITY_TYPE]
    assert set(manifest.node_folders) == {"custom", "nodes"}
    with tarfile.open(path / ARCHIVE_NAME) as tar:
        names = set(tar.getnames())
    assert f"nodes/node_modules/{COMMUNITY_PACKAGE}/package.json" in names
    assert "custom/rv-probe/dist/nodes/RvProbe/RvProbe.node.js" in names
    counts = {name: entry.count for name, entry in manifest.entities.items()}
    assert counts["tags"] == 2 and counts["workflow tags"] == 6
    assert counts["data tables"] == 1 and counts["data table rows"] == 5
    assert counts["users"] == 2 and counts["variables"] == 1 and counts["folders"] == 1
    assert counts["projects"] == 3  # the owner's, the invited member's, the team's
    assert counts["executions"] >= 3 and counts["workflow versions"] > counts["tags"]
    binary = manifest.binary_data
    assert binary is not None and binary.missing_count == 0
    assert sorted(item.size for item in binary.files) == sorted(map(len, rich.binary_payloads))
    # The export keeps pinned data; the checks that need only nodes do not ask n8n for it.
    (exported,) = (path / WORKFLOWS_DIR).glob(f"{rich.uses_extensions_id}-*.json")
    assert len(json.loads(exported.read_text())["pinData"][PINNED_NODE]) == 700
    listed = {str(item["id"]): item for item in rich.source.api.iter_workflows(pinned_data=False)}
    assert "pinData" not in listed[rich.uses_extensions_id]
    with tarfile.open(path / BINARY_ARCHIVE) as tar:
        assert {f"{item.path}.metadata" for item in binary.files} <= set(tar.getnames())


@pytest.mark.parametrize("runtime_args", [PROCESS_ARGS, DOCKER_ARGS], ids=["process", "docker"])
def test_verify_loads_the_nodes_and_finds_every_entity(
    pytester: pytest.Pytester,
    rich_snapshot: tuple[Path, Path],
    runtime_args: tuple[str, ...],
    request: pytest.FixtureRequest,
) -> None:
    if "docker" in runtime_args:
        request.getfixturevalue("n8n_image")
    path, keys = rich_snapshot
    run = run_verify(pytester, path, keys, "--quiet-seconds", "2", *runtime_args)
    assert run.failures == {}
    text = report_with_attachments(run.report)
    assert f"packages: {COMMUNITY_PACKAGE} {COMMUNITY_VERSION}; folders: custom, nodes" in text
    assert "data table rows 5/5" in text and "variables 1/1" in text and "tags 2/2" in text
    assert "3 files, 0.0 MB; 3 served and compared" in text


def _replace_file(folder: Path, keys: Path, name: str, content: bytes | None = None) -> None:
    """Rewrite one snapshot file (or take its new content from disk) and sign the manifest
    again over it: damage the manifest itself cannot reveal."""
    target = folder / name
    if content is not None:
        target.write_bytes(content)
    manifest = Manifest.load(folder)
    files = [
        FileEntry(entry.path, sha256_file(target), target.stat().st_size)
        if entry.path == name
        else entry
        for entry in manifest.files
    ]
    resign_manifest(folder, keys, files=files)


def _archive_without(original: Path, top: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(original) as source, tarfile.open(fileobj=out, mode="w:gz") as tar:
        for member in source:
            if member.name.split("/")[0] != top:
                tar.addfile(member, source.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def _binary_archive_altered(original: Path) -> bytes:
    """The binary archive with one byte of its first data file flipped."""
    out = io.BytesIO()
    with tarfile.open(original) as source, tarfile.open(fileobj=out, mode="w") as tar:
        flipped = False
        for member in source:
            content = source.extractfile(member).read() if member.isfile() else None
            if content and not flipped and not member.name.endswith(".metadata"):
                content = bytes([content[0] ^ 1]) + content[1:]
                flipped = True
            tar.addfile(member, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


def _escaping_archive() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        member = tarfile.TarInfo("nodes/../../escape.js")
        member.size = 2
        tar.addfile(member, io.BytesIO(b"//"))
    return out.getvalue()


def test_verify_names_missing_nodes_refused_archives_and_lost_entities(
    pytester: pytest.Pytester,
    rich: RichSource,
    rich_snapshot: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    path, keys = rich_snapshot
    root = tmp_path / "variants"
    root.mkdir()

    def variant(name: str) -> Path:
        return Path(shutil.copytree(path, root / name))

    # A workflow whose node type no n8n has, in a snapshot of its own (taken last: the
    # other tests use the first snapshot).
    rich.source.api.create_workflow(extensions_workflow("Uses a missing node", MISSING_TYPE))
    shutil.copytree(_snapshot(rich, tmp_path / "second", keys), root / "missing-node")

    _replace_file(variant("garbage-archive"), keys, ARCHIVE_NAME, os.urandom(4096))
    _replace_file(variant("escaping-archive"), keys, ARCHIVE_NAME, _escaping_archive())
    no_package = variant("no-community-package")
    _replace_file(no_package, keys, ARCHIVE_NAME, _archive_without(path / ARCHIVE_NAME, "nodes"))
    altered = variant("altered-binary")
    _replace_file(altered, keys, BINARY_ARCHIVE, _binary_archive_altered(path / BINARY_ARCHIVE))
    lost_tag = variant("lost-tag")
    with sqlite3.connect(lost_tag / "database.sqlite") as conn:
        conn.execute("DELETE FROM tag_entity WHERE name = 'nightly'")
    _replace_file(lost_tag, keys, "database.sqlite")

    run = run_verify(pytester, root, keys, "--quiet-seconds", "2", *PROCESS_ARGS)
    failures = run.failures
    expected = {
        "test_node_types_load[missing-node]": f"{MISSING_TYPE} v1 (not installed) used by",
        "test_boot[garbage-archive]": f"{ARCHIVE_NAME} is refused: is not a readable tar.gz",
        "test_boot[escaping-archive]": "'nodes/../../escape.js' climbs out with '..'",
        "test_community_nodes_load[no-community-package]": (
            f"{COMMUNITY_PACKAGE} {COMMUNITY_VERSION}: node type {COMMUNITY_TYPE} not loaded"
        ),
        "test_node_types_load[no-community-package]": f"{COMMUNITY_TYPE} v1 (not installed)",
        "test_other_entities[lost-tag]": "tags: 1 of the snapshot's 2 missing or changed (1 "
        "restored): ",
        "test_binary_data[altered-binary]": "bytes that differ",
    }
    for test, message in expected.items():
        assert message in failures.get(test, ""), f"{test}: {failures.get(test)!r}"
    assert "'Uses a missing node'" in failures["test_node_types_load[missing-node]"]
    assert "('nightly')" in failures["test_other_entities[lost-tag]"]  # named, by id and name
    # As a reader sees it: the missing node is the verdict's first cause in the summary.
    results = summary_results(rendered_dom(run.report))
    assert any(
        result.startswith(f"FAILED: test_node_types_load: node types: {MISSING_TYPE} v1")
        for result in results
    ), results
    assert "'Uses extensions'" in failures["test_node_types_load[no-community-package]"]
    assert CUSTOM_TYPE not in failures["test_node_types_load[no-community-package]"]
    unrelated = {
        "test_other_entities[missing-node]",
        "test_community_nodes_load[missing-node]",
        "test_node_types_load[lost-tag]",
        "test_workflows_load[lost-tag]",
    }
    assert not unrelated & failures.keys(), "a check failed that has nothing to do with it"
    assert not (tmp_path.parent / "escape.js").exists() and not (root / "escape.js").exists()


def test_restore_into_a_container_puts_nodes_and_binary_data_back(
    rich: RichSource, rich_snapshot: tuple[Path, Path], request: pytest.FixtureRequest
) -> None:
    docker_client = request.getfixturevalue("docker_client")
    n8n_image = request.getfixturevalue("n8n_image")
    path, _ = rich_snapshot
    manifest = Manifest.load(path)
    assert manifest.binary_data is not None
    key = Secret(rich.source.encryption_key)
    target = run_n8n_container(docker_client, n8n_image, encryption_key=key.reveal())
    try:
        folder = inspect_n8n_container(target.name).folder.path
        (folder / "custom").mkdir(exist_ok=True)
        (folder / "custom" / "left-over.txt").write_text("the target's own, kept for rollback")
        restore = ["restore", str(path), "--container", target.name]
        # Killed once the archives were unpacked beside n8n's data, before its journal: the
        # staging folders stay behind, and the next restore removes them first.
        killed = start_paused_backup_cli(restore, STAGED, {})
        killed.kill()
        killed.communicate()
        staged = sorted(p for p in folder.rglob(".restoring-*") if p.is_dir())
        assert len(staged) == 2, staged  # node folders and binary data
        result = run_backup_cli(*restore)
        assert result.returncode == 0, result.stderr
        for leftover in staged:
            said = f"restore: removed staging folder {leftover}, left by an interrupted restore"
            assert said in result.stdout.splitlines()
        assert not list(folder.rglob(".restoring-*"))
        assert "custom, nodes, binary data in " in result.stdout
        assert (folder / "nodes" / "node_modules" / COMMUNITY_PACKAGE / "package.json").is_file()
        assert (folder / "custom" / "rv-probe" / "package.json").is_file()
        assert not (folder / "custom" / "left-over.txt").exists()
        (kept,) = (folder / ROLLBACK_DIR).glob("folders-*")
        assert (kept / "custom" / "left-over.txt").is_file()
        owner = (folder.stat().st_uid, folder.stat().st_gid)
        restored_package = folder / "nodes" / "node_modules" / COMMUNITY_PACKAGE
        assert (restored_package.stat().st_uid, restored_package.stat().st_gid) == owner
        # The container's n8n loads both nodes and serves the binary data, byte for byte.
        url = inspect_n8n_container(target.name).api_url
        assert url is not None
        database = N8nDatabase(folder / "database.sqlite")
        owner_row = database.owner()
        assert owner_row is not None
        with EditorSession(url, owner_row, instance_jwt_secret(database, key)) as editor:
            loaded = loaded_node_types(editor.json("GET", TYPES_PATH)).versions
            assert COMMUNITY_TYPE in loaded and CUSTOM_TYPE in loaded
            first = manifest.binary_data.files[0]
            served = editor.request(
                "GET", "/rest/binary-data", params={"id": first.n8n_id, "action": "download"}
            ).content
        assert hashlib.sha256(served).hexdigest() == first.sha256
    finally:
        remove(docker_client, target)
