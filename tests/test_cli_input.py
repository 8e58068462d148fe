"""Bad input: one line naming the problem, a non-zero exit, and nothing of the user's changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_backup_cli
from tests.fake_n8n_db import make_database


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in lines[0]


@pytest.fixture
def n8n_folder(tmp_path: Path) -> Path:
    folder = tmp_path / ".n8n"
    folder.mkdir()
    make_database(folder / "database.sqlite", "k")
    (folder / "config").write_text('{"encryptionKey": "k"}')
    return folder


def snapshot_args(folder: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "snapshot",
        "--n8n-folder",
        str(folder),
        "--out",
        str(tmp_path / "out"),
        "--key-store",
        str(tmp_path / "keys"),
        *extra,
    ]


def test_missing_folder(tmp_path: Path) -> None:
    result = run_backup_cli(
        *snapshot_args(tmp_path / "nope", tmp_path, "--api-url", "http://127.0.0.1:9")
    )
    assert_one_line_error(result, "does not exist")


def test_not_an_n8n_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_backup_cli(
        *snapshot_args(tmp_path / "empty", tmp_path, "--api-url", "http://127.0.0.1:9")
    )
    assert_one_line_error(result, "is not an n8n folder")


def test_no_api_key(n8n_folder: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = run_backup_cli(
        *snapshot_args(n8n_folder, tmp_path, "--api-url", "http://127.0.0.1:9"), env=env
    )
    assert_one_line_error(result, "no API key")


def test_api_unreachable_changes_nothing(n8n_folder: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text("x")
    before = {p: p.read_bytes() for p in n8n_folder.iterdir()}
    # Port 9 (discard) on loopback: nothing listens there on these machines.
    result = run_backup_cli(
        *snapshot_args(
            n8n_folder, tmp_path, "--api-url", "http://127.0.0.1:9", "--api-key-file", str(key_file)
        )
    )
    assert_one_line_error(result, "cannot reach n8n at http://127.0.0.1:9")
    assert {p: p.read_bytes() for p in n8n_folder.iterdir()} == before
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "keys").exists()


def test_bad_runtime_version() -> None:
    assert_one_line_error(
        run_backup_cli("runtime", "install", "latest; rm -rf /"), "not a release version"
    )
