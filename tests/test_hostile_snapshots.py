"""Snapshots altered as a hostile user would: every case is built from a real snapshot of the
seeded n8n, verified with the real suite, and must fail with its own message. Nothing may pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from backup.digests import manifest_mac, sha256_file
from backup.keystore import KeyStore
from backup.manifest import MANIFEST_NAME, Manifest
from backup.verification_record import TargetResult, VerificationRecord, write_record
from tests.cli_support import run_backup_cli
from tests.docker_support import PROCESS_ARGS
from tests.n8n_support import SourceInstance, TakenSnapshot, copy_variant
from tests.verify_runner import VERIFY_CHECKS, report_with_attachments, run_verify


def read_raw(folder: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    return raw


def write_raw(folder: Path, raw: dict[str, Any], key: str | None) -> None:
    """Write a manifest object; signed with ``key`` (an attacker who has the key, or a writer's
    bug), or left with whatever MAC it carries (an attacker without the key)."""
    body = {name: value for name, value in raw.items() if name != "mac"}
    if key is not None:
        body["mac"] = manifest_mac(body, key)
    elif "mac" in raw:
        body["mac"] = raw["mac"]
    (folder / MANIFEST_NAME).write_text(json.dumps(body, indent=2))


def relist(raw: dict[str, Any], folder: Path, relative: str) -> None:
    """Make the manifest's entry for ``relative`` match the file as it now is."""
    for entry in raw["files"]:
        if entry["path"] == relative:
            entry["sha256"] = sha256_file(folder / relative)
            entry["size"] = (folder / relative).stat().st_size


def first_export(folder: Path) -> str:
    return str(
        sorted(p.relative_to(folder).as_posix() for p in (folder / "workflows").iterdir())[0]
    )


Variant = Callable[[Path, str, Path], None]  # (snapshot copy, encryption key, scratch folder)


def escape_database(folder: Path, key: str, scratch: Path) -> None:
    raw = read_raw(folder)
    raw["database_file"] = "../other/database.sqlite"
    write_raw(folder, raw, key)


def absolute_file(folder: Path, key: str, scratch: Path) -> None:
    raw = read_raw(folder)
    passwd = Path("/etc/passwd")
    raw["files"].append(
        {"path": str(passwd), "sha256": sha256_file(passwd), "size": passwd.stat().st_size}
    )
    write_raw(folder, raw, key)


def database_link(folder: Path, key: str, scratch: Path) -> None:
    outside = scratch / "elsewhere"
    outside.mkdir()
    shutil.move(folder / "database.sqlite", outside / "database.sqlite")
    (folder / "database.sqlite").symlink_to(outside / "database.sqlite")


def listed_file_link(folder: Path, key: str, scratch: Path) -> None:
    export = folder / first_export(folder)
    outside = scratch / "export-copy.json"
    shutil.copyfile(export, outside)
    export.unlink()
    export.symlink_to(outside)


def unlisted_links(folder: Path, key: str, scratch: Path) -> None:
    (folder / "workflows-extra").symlink_to(scratch, target_is_directory=True)
    (folder / "nowhere").symlink_to(scratch / "does-not-exist")


def empty_folder(folder: Path, key: str, scratch: Path) -> None:
    (folder / "stray").mkdir()


def hostile_prefix(folder: Path, key: str, scratch: Path) -> None:
    raw = read_raw(folder)
    raw["table_prefix"] = 'x"; DROP TABLE workflow_entity; --'
    write_raw(folder, raw, key)


def decoy_views(folder: Path, key: str, scratch: Path) -> None:
    """Views that hide the real (active) workflows behind an empty decoy, re-signed."""
    with closing(sqlite3.connect(folder / "database.sqlite")) as conn:
        for table in ("workflow_entity", "execution_entity", "credentials_entity"):
            conn.execute(f"CREATE VIEW decoy_{table} AS SELECT * FROM {table} WHERE 0")
        conn.commit()
    raw = read_raw(folder)
    raw["table_prefix"] = "decoy_"
    relist(raw, folder, "database.sqlite")
    write_raw(folder, raw, key)


def edited_fingerprint(folder: Path, key: str, scratch: Path) -> None:
    raw = read_raw(folder)
    raw["key_fingerprint"] = "1" * 32
    write_raw(folder, raw, None)


def edited_digest(folder: Path, key: str, scratch: Path) -> None:
    raw = read_raw(folder)
    raw["credentials"][0]["digest"] = "hmac-sha256:" + "0" * 64
    write_raw(folder, raw, None)


def unsigned(folder: Path, key: str, scratch: Path) -> None:
    raw = read_raw(folder)
    del raw["mac"]
    write_raw(folder, raw, None)


def export_mismatch(folder: Path, key: str, scratch: Path) -> None:
    relative = first_export(folder)
    body = json.loads((folder / relative).read_text(encoding="utf-8"))
    body["nodes"] = [*body["nodes"], {"name": "Injected", "type": "n8n-nodes-base.noOp"}]
    (folder / relative).write_text(json.dumps(body))
    raw = read_raw(folder)
    relist(raw, folder, relative)
    write_raw(folder, raw, key)


def snapshot_contents(root: Path) -> dict[Path, str]:
    """sha256 of every file inside the snapshot folders (the records beside them excluded)."""
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.glob("*/**/*")
        if path.is_file() and not path.is_symlink()
    }


# Case -> (how it is built, {test: the message its failure must carry}).
CASES: dict[str, tuple[Variant, dict[str, str]]] = {
    "escape-database": (
        escape_database,
        {
            "test_manifest_authentic": "manifest.json is malformed: database_file is "
            "'../other/database.sqlite', not one of",
            "test_files": "not run: manifest authentic failed (see test_manifest_authentic)",
            "test_boot": "not run: manifest authentic failed (see test_manifest_authentic)",
        },
    ),
    "absolute-file": (
        absolute_file,
        {
            "test_manifest_authentic": "path has an unexpected form: '/etc/passwd'",
            "test_key": "not run: manifest authentic failed (see test_manifest_authentic)",
        },
    ),
    "database-link": (
        database_link,
        {
            "test_files": "database.sqlite is a symbolic link (not followed)",
            "test_counts": "not read, the database copy is damaged: database.sqlite is a symbolic",
            "test_boot": "not booted, the database copy is damaged: database.sqlite is a symbolic",
        },
    ),
    "listed-file-link": (listed_file_link, {"test_files": "is a symbolic link (not followed)"}),
    "unlisted-links": (
        unlisted_links,
        {"test_files": "nowhere is a symbolic link, not listed in the manifest"},
    ),
    "empty-folder": (empty_folder, {"test_files": "stray/ is an empty folder"}),
    "hostile-prefix": (
        hostile_prefix,
        {
            "test_manifest_authentic": "malformed: table prefix 'x\"; DROP TABLE "
            "workflow_entity; --' is not"
        },
    ),
    "decoy-views": (
        decoy_views,
        {"test_boot": "not booted: the restored copy is not n8n's: workflow_entity is a view"},
    ),
    "edited-fingerprint": (
        edited_fingerprint,
        {"test_manifest_authentic": f"encryption key {'1' * 32} is not in the key store"},
    ),
    "edited-digest": (
        edited_digest,
        {
            "test_manifest_authentic": "manifest.json does not match its MAC",
            "test_files": "not checked: the manifest is not authentic",
            "test_credentials_decrypt_in_n8n": "not run: files failed (see test_files)",
        },
    ),
    "unsigned": (unsigned, {"test_manifest_authentic": "manifest.json carries no MAC"}),
    "export-mismatch": (export_mismatch, {"test_files": "differs from the database copy"}),
}


def test_hostile_snapshots_fail_each_with_its_message(
    pytester: pytest.Pytester, taken: TakenSnapshot, source: SourceInstance, tmp_path: Path
) -> None:
    key = KeyStore(taken.key_store).load(Manifest.load(taken.path).key_fingerprint)
    root = tmp_path / "hostile"
    root.mkdir()
    for name, (build, _) in CASES.items():
        scratch = tmp_path / f"scratch-{name}"
        scratch.mkdir()
        build(copy_variant(taken, root, name), key, scratch)
    before = snapshot_contents(root)

    # -l: pytest shows every frame's locals in a failure; no key may reach the reports that way.
    run = run_verify(pytester, root, taken.key_store, "-l", "--quiet-seconds", "2", *PROCESS_ARGS)

    assert run.result.ret == 1
    for name, (_, expected) in CASES.items():
        for test, message in expected.items():
            failure = run.failures.get(f"{test}[{name}]", "")
            assert message in failure, f"{test}[{name}]: {failure!r}"
    assert snapshot_contents(root) == before, "verify changed a snapshot"
    report_text = report_with_attachments(run.report)
    xml = run.report.with_suffix(".xml").read_text(encoding="utf-8")
    for secret in [key, source.encryption_key, *source.seeded_secrets]:
        assert secret not in report_text and secret not in xml, "a secret reached a report"
    for report in (run.report, run.report.with_suffix(".xml")):
        assert stat.S_IMODE(report.stat().st_mode) == 0o600, report
    assert stat.S_IMODE(run.report.parent.stat().st_mode) == 0o700


def test_partial_run_is_not_verified_and_prune_keeps_the_verified_one(
    pytester: pytest.Pytester, taken: TakenSnapshot, tmp_path: Path
) -> None:
    key = KeyStore(taken.key_store).load(Manifest.load(taken.path).key_fingerprint)
    root = tmp_path / "backups"
    root.mkdir()
    older = copy_variant(taken, root, "a-older")
    raw = read_raw(older)
    raw["created"] = "2026-01-01T00:00:00+00:00"
    write_raw(older, raw, key)
    write_record(
        older,
        VerificationRecord(
            raw["snapshot_id"],
            "2026-01-01T01:00:00+00:00",
            "earlier full run",
            [TargetResult("2.40.7", "process", "PASSED", [])],
        ),
    )
    newer = copy_variant(taken, root, "b-newer")

    run = run_verify(pytester, newer, taken.key_store, "-k", "test_files", *PROCESS_ARGS)

    run.result.assert_outcomes(passed=1, deselected=VERIFY_CHECKS)  # and the opt-in check
    assert "PARTIAL (not run:" in run.report.read_text(encoding="utf-8")
    listed = json.loads(run_backup_cli("list", str(root), "--json").stdout)
    assert [entry["last_verification"] for entry in listed] == ["PASSED", "PARTIAL"]
    pruned = run_backup_cli("prune", str(root), "--keep-daily", "0", "--keep-weekly", "0")
    assert pruned.returncode == 0, pruned.stderr
    assert older.is_dir() and newer.is_dir(), "prune deleted the only fully verified snapshot"
    assert "keep a-older (newest verified)" in pruned.stdout


def test_key_store_open_to_others_is_refused(
    pytester: pytest.Pytester, taken: TakenSnapshot, tmp_path: Path
) -> None:
    keys = tmp_path / "open-keys"
    shutil.copytree(taken.key_store, keys)
    os.chmod(keys, 0o777)
    run = run_verify(pytester, taken.path, keys, "-k", "authentic", *PROCESS_ARGS)
    failure = run.failures[f"test_manifest_authentic[{taken.path.name}]"]
    assert f"key store {keys} is open to others (mode 777): chmod 700" in failure
