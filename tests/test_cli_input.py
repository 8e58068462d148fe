"""Bad input: one line naming the problem, a non-zero exit, and nothing of the user's changed."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from tests.cli_support import run_backup_cli
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


def test_bad_n8n_version_to_install() -> None:
    assert_one_line_error(
        run_backup_cli("install-n8n", "latest; rm -rf /"), "not a release version"
    )
    assert_one_line_error(  # the old spelling
        run_backup_cli("runtime", "install", "latest; rm -rf /"), "not a release version"
    )


def api_args(tmp_path: Path, url: str = "http://127.0.0.1:9") -> list[str]:
    key_file = tmp_path / "api-key"
    key_file.write_text("x")
    return ["--api-url", url, "--api-key-file", str(key_file)]


@pytest.mark.parametrize(
    ("out", "keys", "expected"),
    [
        ("store", "store", "--snapshots and --key-store are the same folder"),
        ("snaps", "snaps/keys", "is inside --snapshots"),
        ("snaps/inner-snapshot-folder", "snaps", "is inside --key-store"),
        (".n8n/backups", "keys", "overlaps n8n's data folder"),
        (".n8n", "keys", "overlaps n8n's data folder"),
        (".", "../keys-beside-the-test-folder", "overlaps n8n's data folder"),
    ],
)
def test_dangerous_locations_are_refused_before_anything_is_written(
    n8n_folder: Path, tmp_path: Path, out: str, keys: str, expected: str
) -> None:
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    mode = n8n_folder.stat().st_mode
    args = ["snapshot", "--n8n-folder", str(n8n_folder), *api_args(tmp_path)]
    result = run_backup_cli(
        *args, "--out", str(tmp_path / out), "--key-store", str(tmp_path / keys)
    )
    assert_one_line_error(result, expected)
    assert result.returncode == 2
    after = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert after == sorted([*before, "api-key"]), "something was written"
    assert n8n_folder.stat().st_mode == mode


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://[bad", "is not a valid URL"),
        ("http://exa mple", "is not a valid URL"),
        ("http://127.0.0.1:99999", "is not a valid URL"),
        ("ftp://127.0.0.1", "must start with http:// or https://"),
    ],
)
def test_invalid_api_url_is_one_line(
    n8n_folder: Path, tmp_path: Path, url: str, expected: str
) -> None:
    result = run_backup_cli(*snapshot_args(n8n_folder, tmp_path, *api_args(tmp_path, url)))
    assert_one_line_error(result, expected)
    assert result.returncode == 2


def test_an_instance_name_that_cannot_be_a_metric_label_is_one_line(
    n8n_folder: Path, tmp_path: Path
) -> None:
    args = api_args(tmp_path, "http://127.0.0.1:5678")
    result = run_backup_cli(
        *snapshot_args(n8n_folder, tmp_path, *args), "--instance", 'prod "eu"\nx'
    )
    assert_one_line_error(result, "is not an instance name")
    assert result.returncode == 2
    assert not (tmp_path / "out").exists()


def test_api_key_file_that_is_not_utf8(n8n_folder: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "binary-key"
    key_file.write_bytes(b"\xff\xfe\x00key")
    result = run_backup_cli(
        *snapshot_args(
            n8n_folder,
            tmp_path,
            "--api-url",
            "http://127.0.0.1:9",
            "--api-key-file",
            str(key_file),
        )
    )
    assert_one_line_error(result, "is not UTF-8 text")
    assert result.returncode == 2


def test_restore_through_the_api_needs_the_key_store(tmp_path: Path) -> None:
    (tmp_path / "snap").mkdir()
    result = run_backup_cli(
        "restore", str(tmp_path / "snap"), *api_args(tmp_path, "http://127.0.0.1:9")
    )
    assert_one_line_error(result, "give --key-store DIR")


def test_list_needs_a_snapshot_folder_or_a_container() -> None:
    assert_one_line_error(run_backup_cli("list"), "give --snapshots DIR, the folder of snapshots")


def test_version_is_the_installed_one() -> None:
    result = run_backup_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"n8n-backup {metadata.version('n8n-restore-verify')}"


def test_the_snapshot_folder_has_one_name_and_the_old_spelling_still_works(
    tmp_path: Path,
) -> None:
    for args in (["--snapshots", str(tmp_path)], [str(tmp_path)]):
        listed = run_backup_cli("list", *args, "--json")
        assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stderr
        pruned = run_backup_cli("prune", *args, "--dry-run")
        assert pruned.returncode == 0, pruned.stderr
    help_text = run_backup_cli("snapshot", "--help").stdout
    assert "--snapshots DIR" in help_text and "--out" not in help_text


def test_settings_come_from_the_command_line_then_the_environment_then_the_file(
    tmp_path: Path,
) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('snapshots = "/from/file"\njson = true\n[prune]\nkeep-daily = 3\n')
    env = {**os.environ, "N8N_BACKUP_JSON": "false", "N8N_BACKUP_CONFIG": str(settings)}
    shown = run_backup_cli("list", "--show-settings", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "snapshots = PosixPath('/from/file')  (file " in shown.stdout
    assert "json = False  (environment N8N_BACKUP_JSON)" in shown.stdout
    cli = run_backup_cli("list", "--snapshots", "/from/cli", "--show-settings", env=env)
    assert "snapshots = PosixPath('/from/cli')  (command line)" in cli.stdout
    pruned = run_backup_cli("prune", "--show-settings", env=env)
    assert f"keep-daily = 3  (file [prune] of {settings})" in pruned.stdout


def test_bad_settings_are_one_line_errors_and_secrets_are_masked(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("snapshot-folder = 1\n")
    result = run_backup_cli("list", "--config", str(settings))
    assert_one_line_error(result, "unknown setting 'snapshot-folder'")
    settings.write_text("[list]\njson = 'maybe'\n")
    assert_one_line_error(run_backup_cli("list", "--config", str(settings)), "true or false")
    env = {**os.environ, "N8N_BACKUP_POSTGRES": "postgresql://n8n:s3cret@127.0.0.1:1/n8n"}
    shown = run_backup_cli("list", "--show-settings", env=env)
    assert "s3cret" not in shown.stdout and "n8n:***@127.0.0.1" in shown.stdout
    missing = run_backup_cli("snapshot", "--n8n-folder", str(tmp_path), "--snapshots", "x")
    assert_one_line_error(missing, "give --key-store DIR (or N8N_BACKUP_KEY_STORE")


def test_the_command_line_always_wins_and_dangerous_options_are_never_settings(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "N8N_BACKUP_SNAPSHOTS": str(tmp_path / "from-env-does-not-exist"),
        "N8N_BACKUP_FORCE": "true",
        "N8N_BACKUP_CONTAINER": "from-env",
    }
    # The old spellings count as typed: a setting never overrides them.
    snapshot = run_backup_cli("snapshot", "--out", "/typed", "--show-settings", env=env)
    assert "snapshots = PosixPath('/typed')  (command line)" in snapshot.stdout
    listed = run_backup_cli("list", str(tmp_path), "--json", env=env)
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stderr
    # No abbreviations: "--cont" is an error, not the container from the environment.
    assert_one_line_error(
        run_backup_cli("restore", str(tmp_path), "--cont", "typed", env=env), "--cont"
    )
    # --force and restore's --container come only from the command line.
    restore = run_backup_cli("restore", "--show-settings", env=env)
    assert "force" not in restore.stdout and "container" not in restore.stdout
    shown = run_backup_cli("snapshot", "--show-settings", env=env).stdout
    assert "container = 'from-env'  (environment N8N_BACKUP_CONTAINER)" in shown
    for dsn in ("host=db password='s3 cret' user=n8n", "postgresql://n8n:s3@cret@db/n8n"):
        shown = run_backup_cli("list", "--postgres", dsn, "--show-settings")
        assert "s3" not in shown.stdout and "***" in shown.stdout, shown.stdout
