"""Manifest round trip and the offline checks that verify builds on."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from backup.check import count_problems, credential_problems, file_problems
from backup.digests import credential_digest, key_fingerprint, sha256_file, workflow_digest
from backup.errors import InputError, SnapshotError
from backup.manifest import (
    MANIFEST_NAME,
    Counts,
    CredentialEntry,
    FileEntry,
    Manifest,
    WorkflowEntry,
    find_snapshots,
)
from backup.n8n.cipher import decrypt_credential_data
from backup.n8n.postgres import PostgresTarget, error_line
from backup.n8n.sqlite import N8nDatabase, integrity_problems
from backup.secret import Secret
from backup.snapshot import safe_file_stem
from tests.fake_n8n_db import make_database

KEY = "unit-test-key"


def build_snapshot(folder: Path) -> Manifest:
    folder.mkdir()
    database = N8nDatabase(make_database(folder / "database.sqlite", KEY))
    manifest = Manifest(
        snapshot_id="20260101T000000Z-abcdef",
        created="2026-01-01T00:00:00+00:00",
        source_n8n_version="2.40.7",
        database_kind="sqlite",
        database_file="database.sqlite",
        key_fingerprint=key_fingerprint(KEY),
        counts=Counts(workflows=2, credentials=2, executions=2),
        workflows=[
            WorkflowEntry(w.id, w.name, w.active, workflow_digest(w.nodes, w.connections))
            for w in database.workflows()
        ],
        credentials=[
            CredentialEntry(
                c.id, c.name, c.type, credential_digest(decrypt_credential_data(c.data, KEY), KEY)
            )
            for c in database.credentials()
        ],
        files=[
            FileEntry(
                "database.sqlite",
                sha256_file(folder / "database.sqlite"),
                (folder / "database.sqlite").stat().st_size,
            )
        ],
    )
    (folder / MANIFEST_NAME).write_text(manifest.to_json(KEY))
    return manifest


def test_manifest_round_trip(tmp_path: Path) -> None:
    manifest = build_snapshot(tmp_path / "snap")
    assert Manifest.load(tmp_path / "snap") == manifest
    assert find_snapshots(tmp_path) == [tmp_path / "snap"]


def test_incomplete_and_foreign_folders_are_not_snapshots(tmp_path: Path) -> None:
    build_snapshot(tmp_path / ".incomplete-x")
    (tmp_path / "other").mkdir()
    assert find_snapshots(tmp_path) == []
    with pytest.raises(SnapshotError, match="is not a snapshot"):
        Manifest.load(tmp_path / "other")
    (tmp_path / "other" / MANIFEST_NAME).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(SnapshotError, match="not an n8n-restore-verify manifest"):
        Manifest.load(tmp_path / "other")


def test_clean_snapshot_has_no_problems(tmp_path: Path) -> None:
    manifest = build_snapshot(tmp_path / "snap")
    database = N8nDatabase(tmp_path / "snap" / "database.sqlite")
    assert file_problems(tmp_path / "snap", manifest) == []
    assert count_problems(manifest, database) == []
    assert credential_problems(manifest, database, Secret(KEY)) == []


def test_modified_missing_and_unlisted_files_are_named(tmp_path: Path) -> None:
    manifest = build_snapshot(tmp_path / "snap")
    database = tmp_path / "snap" / "database.sqlite"
    raw = bytearray(database.read_bytes())
    raw[200] ^= 0xFF
    database.write_bytes(bytes(raw))
    (tmp_path / "snap" / "extra.txt").write_text("x")
    assert file_problems(tmp_path / "snap", manifest) == [
        "database.sqlite does not match its sha256 in the manifest (modified)",
        "extra.txt is a file not listed in the manifest",
    ]
    database.write_bytes(bytes(raw[:1000]))
    assert "truncated" in file_problems(tmp_path / "snap", manifest)[0]
    database.unlink()
    assert file_problems(tmp_path / "snap", manifest)[0] == "database.sqlite is missing"


def test_lying_counts_and_wrong_key_are_named(tmp_path: Path) -> None:
    manifest = build_snapshot(tmp_path / "snap")
    database = N8nDatabase(tmp_path / "snap" / "database.sqlite")
    lying = replace(manifest, counts=Counts(workflows=5, credentials=2, executions=2))
    assert count_problems(lying, database) == [
        "the manifest counts 5 workflows but lists 2",
        "the manifest counts 5 workflows, the database copy has 2",
    ]
    problems = credential_problems(manifest, database, Secret("another-key"))
    assert problems == [
        f"2 credential(s) do not decrypt with encryption key {key_fingerprint(KEY)} from the "
        "key store: "
        "it is the wrong key for this snapshot"
    ]


def test_integrity_check_catches_garbage(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    assert integrity_problems(path)


def test_deactivate_for_restore(tmp_path: Path) -> None:
    path = make_database(tmp_path / "db.sqlite", KEY)
    assert N8nDatabase(path).deactivate() == 1
    database = N8nDatabase(path)
    assert database.active_workflow_ids() == []
    assert database.count("execution_entity") == 2


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../x", "id1-x"),
        ("Ünïcødé / workflow", "id1-n_c_d_workflow"),
        ("...", "id1-workflow"),
        ("a" * 200, "id1-" + "a" * 60),
    ],
)
def test_safe_file_stem(name: str, expected: str) -> None:
    assert safe_file_stem("id1", name) == expected


@pytest.mark.parametrize(
    "schema",
    ['n8n"; CREATE ROLE evil SUPERUSER LOGIN; --', "public; DROP SCHEMA public", "", "1abc"],
)
def test_hostile_schema_is_refused_by_manifest_and_target(tmp_path: Path, schema: str) -> None:
    manifest = build_snapshot(tmp_path / "snap")
    raw = json.loads((tmp_path / "snap" / MANIFEST_NAME).read_text())
    raw.update(database_kind="postgres", database_file="database.dump", database_schema=schema)
    with pytest.raises(SnapshotError, match="is not a plain identifier"):
        Manifest.from_dict(raw)
    with pytest.raises(InputError, match="is not a plain identifier"):
        PostgresTarget("127.0.0.1", 5432, "u", "d", "", schema=schema)
    assert manifest.table_prefix == ""


def test_deeply_nested_or_invalid_text_manifest_is_a_snapshot_error(tmp_path: Path) -> None:
    folder = tmp_path / "deep"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SnapshotError, match=r"nested deeper than any manifest|cannot read"):
        Manifest.load(folder)
    build_snapshot(tmp_path / "snap")
    raw = json.loads((tmp_path / "snap" / MANIFEST_NAME).read_text())
    raw["workflows"][0]["name"] = "lone surrogate \ud800"
    with pytest.raises(SnapshotError, match="is not valid Unicode text"):
        Manifest.from_dict(raw)


def test_client_errors_quote_the_error_never_the_row() -> None:
    said = (
        "pg_restore: error: could not execute query: ERROR:  invalid input syntax\n"
        'CONTEXT:  COPY workflow_entity, line 3, column nodes: "{\\"token\\": \\"s3cr3t\\"}"\n'
    )
    assert (
        error_line(said)
        == "pg_restore: error: could not execute query: ERROR:  invalid input syntax"
    )
    assert error_line("") == "no message"
